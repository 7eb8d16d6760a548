package order

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

func placeOrder(t *testing.T, h http.Handler) Order {
	t.Helper()
	w := do(h, "POST", "/api/orders", validBody, nil)
	if w.Code != 201 {
		t.Fatalf("create %d %s", w.Code, w.Body.String())
	}
	var o Order
	if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// cancelledEvents returns the order.cancelled payloads written to the outbox for id.
func cancelledEvents(t *testing.T, pool *pgxpool.Pool, id string) []event.OrderCancelledPayload {
	t.Helper()
	var out []event.OrderCancelledPayload
	for _, e := range testkit.OutboxEvents(t, pool, id) {
		if e.EventType != event.OrderCancelled {
			continue
		}
		if e.CausationID != "" || e.CorrelationID != id {
			t.Fatalf("order.cancelled causation %q correlation %q: want none and the orderId", e.CausationID, e.CorrelationID)
		}
		p, err := event.DecodePayload[event.OrderCancelledPayload](e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestCancelAnswersTheSameAndPublishesOnce: a storm of concurrent cancellations of one order writes
// one order.cancelled; every answer is 202 with the first request's cancellation.
func TestCancelAnswersTheSameAndPublishesOnce(t *testing.T) {
	h, pool := realAPI(t)
	o := placeOrder(t, h)
	var wg sync.WaitGroup
	answers := make([]Order, 20)
	for i := range answers {
		wg.Go(func() {
			w := do(h, "POST", "/api/orders/"+o.OrderID+"/cancel", `{"comment":"ordered twice"}`, nil)
			if w.Code != http.StatusAccepted {
				t.Errorf("cancel %d %s", w.Code, w.Body.String())
				return
			}
			_ = json.Unmarshal(w.Body.Bytes(), &answers[i])
		})
	}
	wg.Wait()
	for _, a := range answers {
		if a.Cancellation == nil || *a.Cancellation != *answers[0].Cancellation || a.Cancellation.Reason != event.ReasonCustomerRequest ||
			a.Cancellation.Comment != "ordered twice" {
			t.Fatalf("answers differ: %+v vs %+v", a.Cancellation, answers[0].Cancellation)
		}
	}
	if evs := cancelledEvents(t, pool, o.OrderID); len(evs) != 1 || evs[0].Reason != event.ReasonCustomerRequest || evs[0].Comment != "ordered twice" {
		t.Fatalf("order.cancelled events %+v, want one", evs)
	}
	// Without a body it is a cancellation all the same; GET shows it.
	o2 := placeOrder(t, h)
	r := do(h, "POST", "/api/orders/"+o2.OrderID+"/cancel", "", map[string]string{"Content-Type": ""})
	if r.Code != http.StatusAccepted {
		t.Fatalf("cancel without body %d %s", r.Code, r.Body.String())
	}
	var got Order
	_ = json.Unmarshal(do(h, "GET", "/api/orders/"+o2.OrderID, "", nil).Body.Bytes(), &got)
	if got.Cancellation == nil || got.Cancellation.Reason != event.ReasonCustomerRequest || got.Status != event.OrderStatusCreated {
		t.Fatalf("GET after cancel: %+v", got)
	}
}

// TestCancelRefusals: 404 for an unknown order, 400 for a bad id or comment, 409 once order-service
// knows the order was delivered or ended otherwise (nothing is written then).
func TestCancelRefusals(t *testing.T) {
	h, pool := realAPI(t)
	ctx := testkit.Context(t, 30*time.Second)
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/api/orders/0194b2c5-7d5e-7c3e-9f1a-2b3c4d5e6f70/cancel", "", 404},
		{"/api/orders/not-a-uuid/cancel", "", 400},
		{"/api/orders/0194b2c5-7d5e-7c3e-9f1a-2b3c4d5e6f70/cancel", `{"comment":"x"}trailing`, 400},
		{"/api/orders/0194b2c5-7d5e-7c3e-9f1a-2b3c4d5e6f70/cancel", `{"comment":"` + longComment() + `"}`, 400},
	} {
		if w := do(h, "POST", c.path, c.body, nil); w.Code != c.want || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("POST %s %q: %d %s, want %d with a problem body", c.path, c.body, w.Code, w.Body.String(), c.want)
		}
	}
	for status, want := range map[string]int{event.OrderStatusDelivered: 409, event.OrderStatusInventoryRejected: 409,
		event.OrderStatusPaymentFailed: 409, event.OrderStatusDeliveryAssigned: 202, event.OrderStatusPaymentAuthorized: 202} {
		o := placeOrder(t, h)
		if _, err := pool.Exec(ctx, `UPDATE orders SET status = $2 WHERE order_id = $1`, o.OrderID, status); err != nil {
			t.Fatal(err)
		}
		w := do(h, "POST", "/api/orders/"+o.OrderID+"/cancel", "", nil)
		if w.Code != want {
			t.Fatalf("cancel in %s: %d %s, want %d", status, w.Code, w.Body.String(), want)
		}
		if n := len(cancelledEvents(t, pool, o.OrderID)); (want == 202) != (n == 1) {
			t.Fatalf("cancel in %s: %d order.cancelled events", status, n)
		}
	}
}

func longComment() string {
	b := make([]byte, event.MaxCommentLen+1)
	for i := range b {
		b[i] = 'x'
	}
	return string(b)
}

// TestDeadlineSweepIsSafeOnEveryReplica: orders past the deadline that have not reached
// DELIVERY_ASSIGNED get one DEADLINE_EXCEEDED cancellation even with four sweepers at once, and a
// sweeper passes a locked order by instead of waiting for it; orders assigned, ended, already
// cancelled or still in time get none.
func TestDeadlineSweepIsSafeOnEveryReplica(t *testing.T) {
	h, pool := realAPI(t)
	ctx := testkit.Context(t, time.Minute)
	st := &store{pool: pool, factory: event.Factory{Producer: Name}, now: time.Now}
	var due []string
	for range 30 {
		due = append(due, placeOrder(t, h).OrderID)
	}
	skip := map[string]string{}
	for _, status := range []string{event.OrderStatusDeliveryAssigned, event.OrderStatusInventoryRejected, event.OrderStatusPaymentFailed, event.OrderStatusDelivered} {
		o := placeOrder(t, h)
		if _, err := pool.Exec(ctx, `UPDATE orders SET status = $2 WHERE order_id = $1`, o.OrderID, status); err != nil {
			t.Fatal(err)
		}
		skip[o.OrderID] = status
	}
	asked := placeOrder(t, h)
	do(h, "POST", "/api/orders/"+asked.OrderID+"/cancel", "", nil)
	skip[asked.OrderID] = "cancelled by the customer"
	fresh := placeOrder(t, h) // placed after every other order: the cut below leaves it in time
	deadline := fresh.CreatedAt.Add(-time.Microsecond)
	// One due order is held locked, as a request cancelling it would: the sweepers must pass it by
	// without waiting (SKIP LOCKED), and a later pass takes it once the lock is gone.
	held, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.Exec(ctx, `SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE`, due[0]); err != nil {
		t.Fatal(err)
	}
	sweepCtx, cancelSweep := context.WithTimeout(ctx, 20*time.Second) // a sweeper waiting for the lock fails here
	defer cancelSweep()
	var wg sync.WaitGroup
	total := make([]int, 4)
	for i := range total {
		wg.Go(func() {
			for {
				n, err := st.expire(sweepCtx, deadline, 3)
				if err != nil {
					t.Error(err)
					return
				}
				total[i] += n
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	sum := 0
	for _, n := range total {
		sum += n
	}
	if sum != len(due)-1 || len(cancelledEvents(t, pool, due[0])) != 0 {
		t.Fatalf("sweepers expired %v orders in all, want %d: every due order but the locked one", total, len(due)-1)
	}
	if err := held.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := st.expire(ctx, deadline, 3); err != nil || n != 1 {
		t.Fatalf("the pass after the lock was released expired %d (%v), want the order that was locked", n, err)
	}
	t.Logf("expired per sweeper: %v, then the locked order", total)
	for _, id := range due {
		if evs := cancelledEvents(t, pool, id); len(evs) != 1 || evs[0].Reason != event.ReasonDeadlineExceeded {
			t.Fatalf("%s: %+v, want one DEADLINE_EXCEEDED", id, evs)
		}
	}
	for id, why := range skip {
		evs := cancelledEvents(t, pool, id)
		if (why == "cancelled by the customer") != (len(evs) == 1) || (len(evs) == 1 && evs[0].Reason != event.ReasonCustomerRequest) {
			t.Fatalf("%s (%s): %+v", id, why, evs)
		}
	}
	if evs := cancelledEvents(t, pool, fresh.OrderID); len(evs) != 0 {
		t.Fatalf("an order in time was expired: %+v", evs)
	}

}
