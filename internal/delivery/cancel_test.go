package delivery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

func cancelled(t *testing.T, orderID string) event.Envelope {
	t.Helper()
	e, err := event.Factory{Producer: "order-service"}.New(event.OrderCancelled, orderID,
		event.OrderCancelledPayload{OrderID: orderID, Reason: event.ReasonCustomerRequest})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (s *store) cancelOne(ctx context.Context, t *testing.T, e event.Envelope) decision {
	t.Helper()
	res, err := s.cancelAll(ctx, []event.Envelope{e}, []string{event.ReasonCustomerRequest})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// lastOf returns the last event of type typ written for the order, and how many there were.
func (s *store) lastOf(t *testing.T, orderID string, typ event.Type) (event.CancellationPayload, int) {
	t.Helper()
	var p event.CancellationPayload
	n := 0
	for _, e := range s.events(t, orderID) {
		if e.EventType == typ {
			n++
			p, _ = event.DecodePayload[event.CancellationPayload](e)
		}
	}
	return p, n
}

func (s *store) active(t *testing.T, driverID int) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT active_deliveries FROM drivers WHERE driver_id = $1`, driverID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCancellationAtEveryStage: delivery-service accepts a cancellation until the order is
// delivered — before the payment (and then no later payment assigns a driver), in the driver
// queue (it leaves it), with an active delivery (CANCELLED, the driver freed) — and refuses it after;
// a repeated cancellation is a duplicate, decided once.
func TestCancellationAtEveryStage(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 1, 1, clk)
	ctx := testkit.Context(t, time.Minute)

	// Before the payment.
	early := uuid.NewString()
	if d := s.cancelOne(ctx, t, cancelled(t, early)); d.duplicate || d.refusal != "" || d.freed || d.dequeued {
		t.Fatalf("cancel before payment: %+v", d)
	}
	res, err := s.assignAll(ctx, []event.Envelope{authorized(t, early)})
	if err != nil || !res[0].cancelled || !res[0].duplicate {
		t.Fatalf("payment after the cancellation: %+v %v, want nothing assigned", res, err)
	}
	if p, n := s.lastOf(t, early, event.DeliveryCancelled); n != 1 || p.DeliveryID != "" {
		t.Fatalf("delivery.cancelled %d %+v", n, p)
	}

	// Active delivery, then one in the queue behind it (one driver of capacity one).
	active, waiting := uuid.NewString(), uuid.NewString()
	d, _, _, err := s.assign(ctx, authorized(t, active))
	if err != nil || d.DriverID == 0 {
		t.Fatalf("assign: %+v %v", d, err)
	}
	if _, _, w, err := s.assign(ctx, authorized(t, waiting)); err != nil || !w {
		t.Fatalf("second order should wait: %v %v", w, err)
	}
	dec := s.cancelOne(ctx, t, cancelled(t, waiting))
	if !dec.dequeued {
		t.Fatalf("cancel in the queue: %+v", dec)
	}
	if n, _ := s.waitingCount(ctx); n != 0 {
		t.Fatalf("%d orders still wait", n)
	}
	if s.active(t, d.DriverID) != 1 {
		t.Fatal("the driver's load changed by a queued order's cancellation")
	}
	dec = s.cancelOne(ctx, t, cancelled(t, active))
	if !dec.freed || s.active(t, d.DriverID) != 0 {
		t.Fatalf("cancel an active delivery: %+v, driver load %d", dec, s.active(t, d.DriverID))
	}
	got, err := s.get(ctx, active)
	if err != nil || got.Status != StatusCancelled {
		t.Fatalf("delivery after cancellation: %+v %v", got, err)
	}
	if p, _ := s.lastOf(t, active, event.DeliveryCancelled); p.DeliveryID != d.DeliveryID || p.DriverName != d.DriverName {
		t.Fatalf("delivery.cancelled names %+v, want %s/%s", p, d.DeliveryID, d.DriverName)
	}
	// The scheduler never completes a cancelled delivery.
	clk.advance(2 * MaxDelivery)
	if r, err := s.tick(ctx, time.Minute, 500); err != nil || r.checked != 0 {
		t.Fatalf("scheduler after cancellation: %+v %v", r, err)
	}

	// Delivered: refused; a second request is a duplicate.
	late := uuid.NewString()
	if _, _, _, err := s.assign(ctx, authorized(t, late)); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * MaxDelivery)
	if r, err := s.tick(ctx, time.Minute, 500); err != nil || r.delivered != 1 {
		t.Fatalf("deliver: %+v %v", r, err)
	}
	if dec := s.cancelOne(ctx, t, cancelled(t, late)); dec.refusal != event.RefusalDelivered {
		t.Fatalf("cancel after delivery: %+v", dec)
	}
	if dec := s.cancelOne(ctx, t, cancelled(t, late)); !dec.duplicate {
		t.Fatalf("second cancel: %+v, want a duplicate", dec)
	}
	if p, n := s.lastOf(t, late, event.CancellationRefused); n != 1 || p.Refusal != event.RefusalDelivered {
		t.Fatalf("cancellation.refused %d %+v", n, p)
	}
	if _, n := s.lastOf(t, late, event.DeliveryCancelled); n != 0 {
		t.Fatal("a delivered order was cancelled")
	}
}

// TestCancellationRacesAssignment: cancellations and payments of the same orders arrive at once
// (as from two partitions); every order ends either assigned-then-cancelled or never assigned, no
// driver keeps a unit for a cancelled order, and the race really happened both ways.
func TestCancellationRacesAssignment(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 3, 100, clk)
	ctx := testkit.Context(t, 2*time.Minute)
	const n = 60
	orders := make([]string, n)
	var wg sync.WaitGroup
	for i := range orders {
		orders[i] = uuid.NewString()
		wg.Go(func() {
			if _, err := s.assignAll(ctx, []event.Envelope{authorized(t, orders[i])}); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := s.cancelAll(ctx, []event.Envelope{cancelled(t, orders[i])}, []string{event.ReasonCustomerRequest}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	freedCount, beforeCount := 0, 0
	for _, id := range orders {
		p, c := s.lastOf(t, id, event.DeliveryCancelled)
		if c != 1 {
			t.Fatalf("%s: %d delivery.cancelled", id, c)
		}
		d, err := s.get(ctx, id)
		switch {
		case err == nil && d.Status == StatusCancelled && p.DeliveryID == d.DeliveryID:
			freedCount++
		case err == ErrNotFound && p.DeliveryID == "":
			beforeCount++
		default:
			t.Fatalf("%s: delivery %+v (%v), cancellation %+v", id, d, err, p)
		}
	}
	var load int
	if err := s.pool.QueryRow(ctx, `SELECT sum(active_deliveries) FROM drivers`).Scan(&load); err != nil || load != 0 {
		t.Fatalf("drivers hold %d units after every order was cancelled (%v)", load, err)
	}
	t.Logf("cancelled after assignment: %d, before: %d", freedCount, beforeCount)
	if freedCount == 0 || beforeCount == 0 {
		t.Fatalf("the race went one way only (%d/%d): the test did not exercise both orders of arrival", freedCount, beforeCount)
	}
}
