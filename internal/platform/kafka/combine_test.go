package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

// gatedBatch is a fake batch handler: each call records its events and then waits for the gate, so a
// test can hold a round open while other calls queue.
type gatedBatch struct {
	mu      sync.Mutex
	calls   [][]string // order ids per call, in call order
	ctxErrs []error    // each call's ctx.Err() once released
	gate    chan struct{}
	entered chan struct{}
	fail    func(ids []string) error
}

func newGatedBatch() *gatedBatch {
	return &gatedBatch{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (g *gatedBatch) batch(ctx context.Context, es []event.Envelope) error {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.OrderID
	}
	g.entered <- struct{}{}
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, ids)
	g.ctxErrs = append(g.ctxErrs, ctx.Err())
	if g.fail != nil {
		return g.fail(ids)
	}
	return nil
}

func envs(prefix string, n int) []event.Envelope {
	es := make([]event.Envelope, n)
	for i := range es {
		es[i] = event.Envelope{OrderID: fmt.Sprintf("%s%d", prefix, i)}
	}
	return es
}

// queued waits until n calls wait in c's queue.
func queued(t *testing.T, c *combiner, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.queue)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCombinerJoinsTheCallsMadeDuringARound(t *testing.T) {
	g := newGatedBatch()
	var rounds []int
	c := newCombiner(g.batch, func(n int) { rounds = append(rounds, n) })
	errs := make(chan error, 4)
	go func() { errs <- c.do(context.Background(), envs("a", 2)) }()
	<-g.entered // the first call runs alone at once
	for _, p := range []string{"b", "c", "d"} {
		go func() { errs <- c.do(context.Background(), envs(p, 3)) }()
	}
	queued(t, c, 3)
	close(g.gate)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(rounds, []int{1, 3}) {
		t.Fatalf("calls per round %v, want [1 3]", rounds)
	}
	if len(g.calls) != 2 || !slices.Equal(g.calls[0], []string{"a0", "a1"}) || len(g.calls[1]) != 9 {
		t.Fatalf("batch calls %v", g.calls)
	}
	// Each call's events stay together and in order; the calls' order among themselves is arrival order.
	for i := 0; i < 9; i += 3 {
		p := g.calls[1][i][:1]
		if !slices.Equal(g.calls[1][i:i+3], []string{p + "0", p + "1", p + "2"}) {
			t.Fatalf("combined call %v splits or reorders a call's events", g.calls[1])
		}
	}
	if c.running || len(c.queue) != 0 {
		t.Fatal("combiner not idle after the last round")
	}
}

func TestCombinerRetriesEachCallAloneWhenTheCombinedOneFails(t *testing.T) {
	g := newGatedBatch()
	bad := errors.New("bad event")
	g.fail = func(ids []string) error {
		if slices.Contains(ids, "bad0") {
			return bad
		}
		return nil
	}
	c := newCombiner(g.batch, nil)
	errs := map[string]chan error{}
	for _, p := range []string{"hold", "ok", "bad", "fine"} {
		errs[p] = make(chan error, 1)
	}
	go func() { errs["hold"] <- c.do(context.Background(), envs("hold", 1)) }()
	<-g.entered // holds the first round open, so the three below are combined
	for _, p := range []string{"ok", "bad", "fine"} {
		go func() { errs[p] <- c.do(context.Background(), envs(p, 2)) }()
	}
	queued(t, c, 3)
	close(g.gate)
	for _, p := range []string{"hold", "ok", "fine"} {
		if err := <-errs[p]; err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	if err := <-errs["bad"]; !errors.Is(err, bad) {
		t.Fatalf("bad: %v, want its own error", err)
	}
	// hold alone, the three combined (failed), then each of the three alone.
	if len(g.calls) != 5 || len(g.calls[1]) != 6 {
		t.Fatalf("calls %v, want [hold0], the combined six, then each call alone", g.calls)
	}
	var alone []string
	for _, call := range g.calls[2:] {
		if len(call) != 2 || call[0][:len(call[0])-1] != call[1][:len(call[1])-1] {
			t.Fatalf("calls %v: a retry alone holds another call's events", g.calls)
		}
		alone = append(alone, call[0])
	}
	slices.Sort(alone)
	if !slices.Equal(alone, []string{"bad0", "fine0", "ok0"}) {
		t.Fatalf("retried alone %v, want each of the three once", alone)
	}
}

func TestCombinerDropsACallCancelledWhileQueued(t *testing.T) {
	g := newGatedBatch()
	c := newCombiner(g.batch, nil)
	errs := make(chan error, 3)
	go func() { errs <- c.do(context.Background(), envs("a", 1)) }()
	<-g.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() { cancelled <- c.do(ctx, envs("gone", 1)) }()
	queued(t, c, 1)
	go func() { errs <- c.do(context.Background(), envs("b", 1)) }()
	queued(t, c, 2)
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	queued(t, c, 1)
	close(g.gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, call := range g.calls {
		if slices.Contains(call, "gone0") {
			t.Fatalf("a call cancelled while queued reached the batch: %v", g.calls)
		}
	}
	if len(g.calls) != 2 || !slices.Equal(g.calls[1], []string{"b0"}) {
		t.Fatalf("calls %v, want [a0] then [b0] (the next call led the round)", g.calls)
	}
}

func TestCombinedRoundOutlivesTheLeadingCallsContext(t *testing.T) {
	g := newGatedBatch()
	c := newCombiner(g.batch, nil)
	ctx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() { leader <- c.do(ctx, envs("lead", 1)) }()
	<-g.entered
	follower := make(chan error, 1)
	go func() { follower <- c.do(context.Background(), envs("follow", 1)) }()
	queued(t, c, 1)
	cancel() // e.g. the leader's partition was revoked while its round ran
	close(g.gate)
	if err := <-leader; err != nil {
		t.Fatalf("leader: %v (it waits for the round it runs and reports its result)", err)
	}
	if err := <-follower; err != nil {
		t.Fatalf("follower: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.ctxErrs) != 2 || g.ctxErrs[0] != nil {
		t.Fatalf("the round's context was cancelled with the leader's: %v", g.ctxErrs)
	}
}

// TestCombinerRunsOneRoundAtATime: six callers, random batch times, failures and cancellations; never
// two rounds at once (the batch would run two transactions that a combiner exists to avoid), every
// call returns, and the combiner ends idle.
func TestCombinerRunsOneRoundAtATime(t *testing.T) {
	var inRound sync.Mutex
	c := newCombiner(func(context.Context, []event.Envelope) error {
		if !inRound.TryLock() {
			t.Error("two rounds at once")
			return nil
		}
		defer inRound.Unlock()
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		if rand.IntN(10) == 0 {
			return errors.New("failed")
		}
		return nil
	}, nil)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range 500 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(300))*time.Microsecond)
				_ = c.do(ctx, envs("x", 1+rand.IntN(3)))
				cancel()
			}
		})
	}
	wg.Wait()
	if c.running || len(c.queue) != 0 {
		t.Fatalf("combiner not idle: running %v, %d queued", c.running, len(c.queue))
	}
}
