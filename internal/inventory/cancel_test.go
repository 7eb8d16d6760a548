package inventory

import (
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/catalog"
	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

func cancelledEvent(t *testing.T, orderID string) event.Envelope {
	t.Helper()
	e, err := event.Factory{Producer: "delivery-service"}.New(event.DeliveryCancelled, orderID,
		event.CancellationPayload{OrderID: orderID, Reason: event.ReasonDeadlineExceeded})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestCancellationReleasesOrHoldsThePlace: an accepted cancellation releases a live reservation
// (inventory.released, ORDER_CANCELLED) once; one that arrives before its order.created keeps the
// order from reserving anything when it comes; in one batch, a reservation made earlier is released
// by a cancellation later in the batch.
func TestCancellationReleasesOrHoldsThePlace(t *testing.T) {
	s := newStore(t, catalog.Item{ItemID: "A", Name: "a", Stock: 10})
	ctx := testkit.Context(t, 30*time.Second)

	e, p := orderEvent(t, item("A", 4))
	if out, err := s.reserve(ctx, e, p); err != nil || out.result != "reserved" {
		t.Fatalf("%+v %v", out, err)
	}
	c := cancelledEvent(t, e.OrderID)
	if out, err := s.release(ctx, c, event.PaymentPayload{}); err != nil || out.result != "released" {
		t.Fatalf("cancel: %+v %v", out, err)
	}
	if out, _ := s.release(ctx, c, event.PaymentPayload{}); !out.duplicate {
		t.Fatal("a redelivered delivery.cancelled was applied again")
	}
	if a := s.mustItem(t, "A"); a.Available != 10 || a.Reserved != 0 {
		t.Fatalf("after the cancellation %+v", a)
	}
	evs := outboxEvents(t, s, e.OrderID)
	rel, _ := event.DecodePayload[event.InventoryReleasedPayload](evs[len(evs)-1])
	if len(evs) != 2 || evs[1].EventType != event.InventoryReleased || rel.Reason != event.ReasonOrderCancelled {
		t.Fatalf("events %v, release %+v", evs, rel)
	}

	// Cancelled before its order.created arrived.
	early, ep := orderEvent(t, item("A", 3))
	if out, err := s.release(ctx, cancelledEvent(t, early.OrderID), event.PaymentPayload{}); err != nil || out.result != "cancelled" {
		t.Fatalf("early cancel: %+v %v", out, err)
	}
	if out, err := s.reserve(ctx, early, ep); err != nil || out.result != "cancelled" {
		t.Fatalf("order.created after its cancellation: %+v %v", out, err)
	}
	if a := s.mustItem(t, "A"); a.Available != 10 {
		t.Fatalf("an order cancelled first reserved stock: %+v", a)
	}
	if evs := outboxEvents(t, s, early.OrderID); len(evs) != 0 {
		t.Fatalf("events for an order cancelled first: %v", evs)
	}

	// One batch: reserve, then cancel.
	b, bp := orderEvent(t, item("A", 5))
	outs, err := s.apply(ctx, []event.Envelope{b, cancelledEvent(t, b.OrderID)}, map[int]event.OrderCreatedPayload{0: bp})
	if err != nil || outs[0].result != "reserved" || outs[1].result != "released" {
		t.Fatalf("batch: %+v %v", outs, err)
	}
	if a := s.mustItem(t, "A"); a.Available != 10 || a.Reserved != 0 {
		t.Fatalf("after the batch %+v", a)
	}
}
