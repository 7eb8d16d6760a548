package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStopsInReverseOrderAndReportsFirstFailure(t *testing.T) {
	var mu sync.Mutex
	var order []string
	comp := func(name string, fail error) Component {
		return Component{Name: name, Run: func(ctx context.Context) error {
			if fail != nil {
				time.Sleep(10 * time.Millisecond)
				return fail
			}
			<-ctx.Done()
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}}
	}
	boom := errors.New("boom")
	var drained bool
	g := &Group{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), BeforeStop: func() {
		mu.Lock()
		drained = len(order) == 0 // readiness goes off before anything stops
		mu.Unlock()
	}}
	g.Add(comp("relay", nil))
	g.Add(comp("consumer", nil))
	g.Add(comp("failing", boom))
	g.Add(comp("http", nil))
	err := g.Run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	want := []string{"http", "consumer", "relay"}
	if len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] || !drained {
		t.Fatalf("stop order %v drained-first %v", order, drained)
	}
}

func TestCancelStopsCleanly(t *testing.T) {
	g := &Group{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	g.Add(Component{Name: "a", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDrainDelayKeepsComponentsRunning: after BeforeStop (readiness off) the components keep
// running for the whole drain delay before the first is cancelled.
func TestDrainDelayKeepsComponentsRunning(t *testing.T) {
	const drain = 100 * time.Millisecond
	var offAt, cancelledAt time.Time
	g := &Group{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DrainDelay: drain,
		BeforeStop: func() { offAt = time.Now() }}
	g.Add(Component{Name: "http", Run: func(ctx context.Context) error {
		<-ctx.Done()
		cancelledAt = time.Now()
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if offAt.IsZero() || cancelledAt.Sub(offAt) < drain {
		t.Fatalf("cancelled %s after readiness went off, want at least the drain delay %s", cancelledAt.Sub(offAt), drain)
	}
}

// TestShutdownDeadlineIsShared: ShutdownTimeout bounds the whole stop, not each component: when
// the first component to stop overruns it, the group gives up once (one warning), cancels the
// rest and returns, instead of waiting a timeout per component.
func TestShutdownDeadlineIsShared(t *testing.T) {
	var logs recorder
	release := make(chan struct{})
	defer close(release)
	stuck := func(ctx context.Context) error { <-release; return nil } // ignores cancellation
	started := map[string]chan context.Context{"relay": make(chan context.Context, 1), "consumer": make(chan context.Context, 1)}
	g := &Group{Log: slog.New(&logs), ShutdownTimeout: 50 * time.Millisecond}
	for _, name := range []string{"relay", "consumer"} {
		g.Add(Component{Name: name, Run: func(ctx context.Context) error {
			started[name] <- ctx
			<-release // stuck too, had it been waited for
			return nil
		}})
	}
	g.Add(Component{Name: "http", Run: stuck})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for name, c := range started {
		if ctx := <-c; ctx.Err() == nil {
			t.Errorf("%s was not cancelled when the deadline passed", name)
		}
	}
	if n := logs.count("shutdown deadline passed"); n != 1 {
		t.Errorf("%d deadline warnings, want 1 (one deadline for the whole stop)", n)
	}
}

// recorder is a slog.Handler that keeps the messages it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.HasPrefix(m, msg) {
			n++
		}
	}
	return n
}
