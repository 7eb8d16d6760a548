package order

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestTrackerFollowsTheSagaInAnyOrder: whatever order and however often the saga's events arrive,
// in one batch or several, the order ends on the status of its highest-ranked event, the read
// model's rule; events that set no status, and events of ids that are not this service's orders,
// change nothing.
func TestTrackerFollowsTheSagaInAnyOrder(t *testing.T) {
	h, pool := realAPI(t)
	ctx := testkit.Context(t, time.Minute)
	tr := newTracker(pool, prometheus.NewRegistry())
	status := func(id string) string {
		w := do(h, "GET", "/api/orders/"+id, "", nil)
		var o Order
		_ = json.Unmarshal(w.Body.Bytes(), &o)
		return o.Status
	}
	rng := rand.New(rand.NewPCG(1, 2))
	f := event.Factory{Producer: "test"}
	base := time.Now().UTC()
	for round := range 20 {
		w := do(h, "POST", "/api/orders", validBody, nil)
		var o Order
		_ = json.Unmarshal(w.Body.Bytes(), &o)
		var es []event.Envelope
		for i, typ := range []event.Type{event.InventoryReserved, event.PaymentAuthorized, event.DeliveryAssigned,
			event.ETAUpdated, event.DeliveryCompleted} {
			e, err := f.New(typ, o.OrderID, map[string]string{})
			if err != nil {
				t.Fatal(err)
			}
			e.OccurredAt = base.Add(time.Duration(i) * time.Second)
			es = append(es, e)
		}
		other, _ := f.New(event.DeliveryCompleted, "not-an-order-of-ours", map[string]string{})
		es = append(es, es[rng.IntN(len(es))], other) // a redelivery and a foreign id
		rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
		for len(es) > 0 {
			n := 1 + rng.IntN(len(es))
			if err := tr.handle(ctx, es[:n]); err != nil {
				t.Fatal(err)
			}
			es = es[n:]
		}
		if got := status(o.OrderID); got != event.OrderStatusDelivered {
			t.Fatalf("round %d: order ends %s, want DELIVERED", round, got)
		}
	}
	// A late lower-ranked event changes nothing.
	w := do(h, "POST", "/api/orders", validBody, nil)
	var o Order
	_ = json.Unmarshal(w.Body.Bytes(), &o)
	failed, _ := f.New(event.PaymentFailed, o.OrderID, map[string]string{})
	reserved, _ := f.New(event.InventoryReserved, o.OrderID, map[string]string{})
	reserved.OccurredAt = failed.OccurredAt.Add(time.Second) // later clock, lower rank
	before := testutil.ToFloat64(tr.updated)
	for _, e := range []event.Envelope{failed, reserved} {
		if err := tr.handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	if got := status(o.OrderID); got != event.OrderStatusPaymentFailed {
		t.Fatalf("after a late inventory.reserved: %s, want PAYMENT_FAILED", got)
	}
	if d := testutil.ToFloat64(tr.updated) - before; d != 1 {
		t.Fatalf("%v status changes counted, want 1 (the late event changes nothing)", d)
	}
	// Each order reached DELIVERED once (redeliveries count nothing), the last one PAYMENT_FAILED;
	// the stage histogram has one observation per status reached.
	if d, f := testutil.ToFloat64(tr.reached.WithLabelValues(event.OrderStatusDelivered)), testutil.ToFloat64(tr.reached.WithLabelValues(event.OrderStatusPaymentFailed)); d != 20 || f != 1 {
		t.Fatalf("order_status_reached_total: DELIVERED %v, PAYMENT_FAILED %v; want 20 and 1", d, f)
	}
	if n := testutil.CollectAndCount(tr.stage, "order_stage_seconds"); n == 0 {
		t.Fatal("no order_stage_seconds series")
	}
	var m dto.Metric
	if err := tr.stage.WithLabelValues(event.OrderStatusDelivered).(prometheus.Histogram).Write(&m); err != nil || m.GetHistogram().GetSampleCount() != 20 {
		t.Fatalf("order_stage_seconds{DELIVERED}: %v observations (%v), want 20", m.GetHistogram().GetSampleCount(), err)
	}
}

// TestTrackerCombinesConcurrentBatches: while one statement waits (a row lock held elsewhere), the
// batches of other partitions queue and go out together in the next statement, and every order
// still ends on its status.
func TestTrackerCombinesConcurrentBatches(t *testing.T) {
	h, pool := realAPI(t)
	ctx := testkit.Context(t, time.Minute)
	tr := newTracker(pool, prometheus.NewRegistry())
	f := event.Factory{Producer: "test"}
	const orders = 30
	ids := make([]string, orders)
	for i := range ids {
		var o Order
		_ = json.Unmarshal(do(h, "POST", "/api/orders", validBody, nil).Body.Bytes(), &o)
		ids[i] = o.OrderID
	}
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := lock.Exec(ctx, `SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE`, ids[0]); err != nil {
		t.Fatal(err)
	}
	handle := func(id string) error {
		e, err := f.New(event.PaymentAuthorized, id, map[string]string{})
		if err != nil {
			return err
		}
		return tr.handle(ctx, []event.Envelope{e})
	}
	errs := make(chan error, orders)
	go func() { errs <- handle(ids[0]) }() // sends the first statement, which waits for the lock
	testkit.Eventually(t, 10*time.Second, "the first statement sent", func() bool { return tr.statements.Load() == 1 })
	for _, id := range ids[1:] {
		go func() { errs <- handle(id) }()
	}
	testkit.Eventually(t, 10*time.Second, "the other batches queued", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return len(tr.queued) == orders-1
	})
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range orders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := tr.statements.Load(); n != 2 {
		t.Fatalf("%d statements for %d batches, want 2: the one that waited and one for the rest", n, orders)
	}
	for _, id := range ids {
		var o Order
		_ = json.Unmarshal(do(h, "GET", "/api/orders/"+id, "", nil).Body.Bytes(), &o)
		if o.Status != event.OrderStatusPaymentAuthorized {
			t.Fatalf("order %s: %s, want PAYMENT_AUTHORIZED", id, o.Status)
		}
	}
}
