package payment

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/redislock"
	"github.com/orderflow/orderflow/internal/testkit"
)

func cancelEvent(t *testing.T, orderID string) event.Envelope {
	t.Helper()
	e, err := event.Factory{Producer: "inventory-service"}.New(event.InventoryReleased, orderID,
		event.InventoryReleasedPayload{OrderID: orderID, ReservationID: "r-1", Reason: event.ReasonOrderCancelled, CancelReason: event.ReasonCustomerRequest})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// eventTypes lists the types payment-service wrote for the order, in order.
func (f fixture) eventTypes(t *testing.T, orderID string) []event.Type {
	t.Helper()
	var out []event.Type
	for _, e := range testkit.OutboxEvents(t, f.pool, orderID) {
		out = append(out, e.EventType)
	}
	return out
}

// TestRefundStormRefundsOnce: an authorized payment is refunded exactly once by a storm of
// cancellations — the same release redelivered on two instances and other releases for
// the order — and the layers that caught the repeats are counted.
func TestRefundStormRefundsOnce(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, time.Minute)
	a, _ := f.instance(t, f.rdb, 5*time.Second)
	b, _ := f.instance(t, f.rdb, 5*time.Second)
	charge := reservedEvent(t, "42.00")
	if err := a.handle(ctx, []event.Envelope{charge}); err != nil {
		t.Fatal(err)
	}
	c := cancelEvent(t, charge.OrderID)
	others := []event.Envelope{cancelEvent(t, charge.OrderID), cancelEvent(t, charge.OrderID)}
	var wg sync.WaitGroup
	for _, p := range []*processor{a, b} {
		wg.Go(func() {
			for range 5 {
				if err := p.handle(ctx, []event.Envelope{c}); err != nil {
					t.Error(err)
				}
			}
			if err := p.handle(ctx, others); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	pay, err := a.get(ctx, charge.OrderID)
	if err != nil || pay.Status != StatusRefunded || pay.RefundedAt == nil || pay.Amount.String() != "42.00" {
		t.Fatalf("payment after the storm: %+v %v", pay, err)
	}
	if got := f.eventTypes(t, charge.OrderID); len(got) != 2 || got[0] != event.PaymentAuthorized || got[1] != event.PaymentRefunded {
		t.Fatalf("events %v, want payment.authorized then one payment.refunded", got)
	}
	refunded := testutil.ToFloat64(a.metrics.cancels.WithLabelValues(cancelOutcomeRefunded)) + testutil.ToFloat64(b.metrics.cancels.WithLabelValues(cancelOutcomeRefunded))
	redisHits := testutil.ToFloat64(a.metrics.redisHit) + testutil.ToFloat64(b.metrics.redisHit)
	dbNoop := testutil.ToFloat64(a.metrics.cancels.WithLabelValues(cancelOutcomeNothing)) + testutil.ToFloat64(b.metrics.cancels.WithLabelValues(cancelOutcomeNothing))
	if refunded != 1 || redisHits+dbNoop != 13 || redisHits == 0 || dbNoop == 0 {
		t.Fatalf("refunded %v, Redis hits %v, database no-ops %v: want 1 refund and the 13 repeats caught by both layers", refunded, redisHits, dbNoop)
	}
}

// TestCancelledBeforeChargeIsNeverCharged: a cancellation that comes before the charge leaves a
// CANCELLED row; the charge that follows writes and publishes nothing, also when both come in one
// batch. A declined payment has nothing to refund.
func TestCancelledBeforeChargeIsNeverCharged(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, time.Minute)
	p, _ := f.instance(t, f.rdb, 5*time.Second)
	charge := reservedEvent(t, "10.00")
	if err := p.handle(ctx, []event.Envelope{cancelEvent(t, charge.OrderID)}); err != nil {
		t.Fatal(err)
	}
	if err := p.handle(ctx, []event.Envelope{charge}); err != nil {
		t.Fatal(err)
	}
	if pay, err := p.get(ctx, charge.OrderID); err != nil || pay.Status != StatusCancelled {
		t.Fatalf("payment: %+v %v", pay, err)
	}
	if got := f.eventTypes(t, charge.OrderID); len(got) != 0 {
		t.Fatalf("events %v, want none", got)
	}
	if n := testutil.ToFloat64(p.metrics.cancels.WithLabelValues(cancelOutcomeChargeSkip)); n != 1 {
		t.Fatalf("charge_skipped %v", n)
	}
	// Reservation and release in one batch (payment-service was stopped meanwhile): never charged.
	both := reservedEvent(t, "10.00")
	if err := p.handle(ctx, []event.Envelope{both, cancelEvent(t, both.OrderID)}); err != nil {
		t.Fatal(err)
	}
	if pay, err := p.get(ctx, both.OrderID); err != nil || pay.Status != StatusCancelled {
		t.Fatalf("payment of an order released in the same batch: %+v %v", pay, err)
	}
	if got := f.eventTypes(t, both.OrderID); len(got) != 0 {
		t.Fatalf("events %v, want none", got)
	}
	if n := testutil.ToFloat64(p.metrics.cancels.WithLabelValues(cancelOutcomeChargeSkip)); n != 2 {
		t.Fatalf("charge_skipped %v, want 2", n)
	}
	declined := reservedEvent(t, "9000.00")
	for _, e := range []event.Envelope{declined, cancelEvent(t, declined.OrderID)} {
		if err := p.handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	if pay, _ := p.get(ctx, declined.OrderID); pay.Status != event.PaymentStatusFailed {
		t.Fatalf("declined payment after cancellation: %+v", pay)
	}
	if got := f.eventTypes(t, declined.OrderID); len(got) != 1 || got[0] != event.PaymentFailed {
		t.Fatalf("events %v, want payment.failed only", got)
	}
}

// TestChargeRacesCancellationOnTheDatabaseLayer: with Redis down (no locks), charges and
// cancellations of the same orders race; the database alone decides each order one way or the
// other — refunded after the charge, or cancelled before it and never charged — and both ways
// happened.
func TestChargeRacesCancellationOnTheDatabaseLayer(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, time.Minute)
	down := redislock.NewClient(redislock.Config{Addr: "127.0.0.1:1"})
	defer func() { _ = down.Close() }()
	p, _ := f.instance(t, down, 100*time.Millisecond)
	const n = 40
	charges := make([]event.Envelope, n)
	var wg sync.WaitGroup
	for i := range charges {
		charges[i] = reservedEvent(t, "10.00")
		wg.Go(func() {
			if err := p.handle(ctx, []event.Envelope{charges[i]}); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if err := p.handle(ctx, []event.Envelope{cancelEvent(t, charges[i].OrderID)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ways := map[string]int{}
	for _, c := range charges {
		pay, err := p.get(ctx, c.OrderID)
		if err != nil {
			t.Fatal(err)
		}
		evs := f.eventTypes(t, c.OrderID)
		switch {
		case pay.Status == StatusRefunded && len(evs) == 2 && evs[1] == event.PaymentRefunded:
		case pay.Status == StatusCancelled && len(evs) == 0:
		default:
			t.Fatalf("%s: payment %s, events %v", c.OrderID, pay.Status, evs)
		}
		ways[pay.Status]++
	}
	if ways[StatusRefunded] == 0 || ways[StatusCancelled] == 0 {
		t.Fatalf("outcomes %v: the race went one way only", ways)
	}
	t.Logf("outcomes: %v", ways)
}
