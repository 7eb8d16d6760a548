package payment

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/redislock"
	"github.com/orderflow/orderflow/internal/testkit"
)

// The batch path decides exactly like the single-event path: one payment per order, declines
// recorded, an event repeated in the batch and a second event for an order in the batch recognised
// as duplicates by the same layers, other event types acknowledged without effect.
func TestBatchAppliesTheThreeLayers(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, time.Minute)
	p, _ := f.instance(t, f.rdb, 5*time.Second)
	e1, e2, e3 := reservedEvent(t, "10.00"), reservedEvent(t, "20.00"), reservedEvent(t, "9000.00")
	second := reservedEvent(t, "20.00") // another eventId for e2's order
	second.OrderID = e2.OrderID
	second.Payload = e2.Payload
	rejected, err := event.Factory{Producer: "inventory-service"}.New(event.InventoryRejected, e1.OrderID,
		event.InventoryPayload{OrderID: e1.OrderID, Amount: event.MustMoney("1.00"), Currency: "EUR", CustomerID: "cust",
			Reason: "INSUFFICIENT_STOCK"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.handle(ctx, []event.Envelope{e1, e2, e3, e1, second, rejected}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []event.Envelope{e1, e2, e3} {
		if pays, evs := f.counts(t, e.OrderID); pays != 1 || evs != 1 {
			t.Fatalf("order %s: %d payments, %d events; want 1 and 1", e.OrderID, pays, evs)
		}
	}
	if pay, err := p.get(ctx, e3.OrderID); err != nil || pay.Status != event.PaymentStatusFailed || *pay.FailureReason != ReasonAmountLimit {
		t.Fatalf("over-limit order: %+v, %v", pay, err)
	}
	m := p.metrics
	for name, c := range map[string]struct{ got, want float64 }{
		"processed": {sum(m, func(m *metrics) prometheus.Counter { return m.processed }), 3},
		"failed":    {sum(m, func(m *metrics) prometheus.Counter { return m.failed }), 1},
		"duplicate": {sum(m, func(m *metrics) prometheus.Counter { return m.duplicate }), 2},
		"redis hit": {sum(m, func(m *metrics) prometheus.Counter { return m.redisHit }), 1}, // e1 again, after the batch marked it
		"db hit":    {sum(m, func(m *metrics) prometheus.Counter { return m.dbHit }), 1},    // the second eventId of e2's order
		"lock wait": {sum(m, func(m *metrics) prometheus.Counter { return m.lockTimeout }), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", name, c.got, c.want)
		}
	}
	// The whole batch again (a redelivery): every event is a Redis hit, nothing new is written.
	if err := p.handle(ctx, []event.Envelope{e1, e2, e3}); err != nil {
		t.Fatal(err)
	}
	if got := sum(m, func(m *metrics) prometheus.Counter { return m.redisHit }); got != 4 {
		t.Fatalf("redelivered batch: %v Redis hits, want 4", got)
	}
	if pays, evs := f.counts(t, e2.OrderID); pays != 1 || evs != 1 {
		t.Fatalf("after redelivery: %d payments, %d events", pays, evs)
	}
}

// An event whose order lock another instance holds fails its batch without charging anything; the
// runner then hands the batch over in halves (done by hand here): the free event is charged at once,
// and the held one, alone, waits for the lock and is charged once it is free.
func TestBatchWaitsForALockHeldElsewhere(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, time.Minute)
	p, _ := f.instance(t, f.rdb, 5*time.Second)
	free, held := reservedEvent(t, "10.00"), reservedEvent(t, "11.00")
	other := &redislock.Locker{Client: f.rdb, Prefix: p.locker.Prefix, TTL: 30 * time.Second}
	lk, err := other.Acquire(ctx, held.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan time.Time, 1)
	go func() { // the other instance finishes its work on the order a little later
		time.Sleep(300 * time.Millisecond)
		released <- time.Now()
		_, _ = lk.Release(context.Background())
	}()
	if err := p.handle(ctx, []event.Envelope{free, held}); !errors.Is(err, errLockHeld) {
		t.Fatalf("batch with a lock held elsewhere: %v, want errLockHeld", err)
	}
	if pays, _ := f.counts(t, free.OrderID); pays != 0 {
		t.Fatal("the failed batch charged the free order")
	}
	for _, half := range []event.Envelope{free, held} {
		if err := p.handle(ctx, []event.Envelope{half}); err != nil {
			t.Fatal(err)
		}
	}
	// Charged only under the lock, i.e. after the other owner let go.
	pay, err := p.get(ctx, held.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	if at := <-released; pay.CreatedAt.Before(at.Truncate(time.Microsecond)) {
		t.Fatalf("the held order was charged at %v, before the other owner released its lock at %v", pay.CreatedAt, at)
	}
	for _, e := range []event.Envelope{free, held} {
		if pays, evs := f.counts(t, e.OrderID); pays != 1 || evs != 1 {
			t.Fatalf("order %s: %d payments, %d events", e.OrderID, pays, evs)
		}
	}
	if got := sum(p.metrics, func(m *metrics) prometheus.Counter { return m.processed }); got != 2 {
		t.Fatalf("processed %v, want 2", got)
	}
}

// With Redis unreachable the batch still charges once per order (layer 3), and a redelivery is
// caught by the database.
func TestBatchWithoutRedis(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, time.Minute)
	down := redislock.NewClient(redislock.Config{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = down.Close() })
	p, _ := f.instance(t, down, time.Second)
	es := []event.Envelope{reservedEvent(t, "10.00"), reservedEvent(t, "12.00")}
	for range 2 {
		if err := p.handle(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range es {
		if pays, evs := f.counts(t, e.OrderID); pays != 1 || evs != 1 {
			t.Fatalf("order %s: %d payments, %d events", e.OrderID, pays, evs)
		}
	}
	if got := sum(p.metrics, func(m *metrics) prometheus.Counter { return m.dbHit }); got != 2 {
		t.Fatalf("db hits %v, want 2", got)
	}
}
