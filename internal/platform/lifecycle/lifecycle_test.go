package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
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
