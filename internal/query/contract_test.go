package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
)

// saga builds the full event sequence of one order: created, reserved, authorized, assigned and
// three ETA updates, with increasing occurredAt.
func saga(t testing.TB, orderID string) []event.Envelope {
	t.Helper()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	mk := clocked(t, orderID, base)
	amount := event.MustMoney("42.50")
	eta := func(min int) event.DeliveryPayload {
		return event.DeliveryPayload{OrderID: orderID, DeliveryID: "DEL-000000000001", DriverName: "Ada Lovelace",
			Status: event.DeliveryStatusAssigned, EstimatedDeliveryTime: base.Add(time.Duration(min) * time.Minute)}
	}
	return []event.Envelope{
		mk(event.OrderCreated, event.OrderCreatedPayload{CustomerID: "cust-7", TotalAmount: amount, Currency: "EUR",
			Items: []event.Item{{ItemID: "SKU-001", Quantity: 1, UnitPrice: amount}}}),
		mk(event.InventoryReserved, event.InventoryPayload{OrderID: orderID, Amount: amount, Currency: "EUR", CustomerID: "cust-7", ReservationID: "r-1"}),
		mk(event.PaymentAuthorized, event.PaymentPayload{PaymentID: 9, OrderID: orderID, Amount: amount, Currency: "EUR", Status: event.PaymentStatusAuthorized}),
		mk(event.DeliveryAssigned, eta(45)),
		mk(event.ETAUpdated, eta(47)),
		mk(event.ETAUpdated, eta(52)),
		mk(event.ETAUpdated, eta(49)),
	}
}

// cancelledSaga is an order cancelled after its driver was assigned: the first four events of saga,
// then the request, delivery-service's acceptance and the two compensations.
func cancelledSaga(t testing.TB, orderID string) []event.Envelope {
	t.Helper()
	evs := saga(t, orderID)[:4]
	mk := clocked(t, orderID, evs[3].OccurredAt)
	return append(evs,
		mk(event.OrderCancelled, event.OrderCancelledPayload{OrderID: orderID, Reason: event.ReasonCustomerRequest, Comment: "changed my mind"}),
		mk(event.DeliveryCancelled, event.CancellationPayload{OrderID: orderID, Reason: event.ReasonCustomerRequest,
			DeliveryID: "DEL-000000000001", DriverName: "Ada Lovelace"}),
		mk(event.PaymentRefunded, event.PaymentRefundedPayload{PaymentID: 9, OrderID: orderID, Amount: event.MustMoney("42.50"),
			Currency: "EUR", Reason: event.ReasonCustomerRequest}),
		mk(event.InventoryReleased, event.InventoryReleasedPayload{OrderID: orderID, ReservationID: "r-1", Reason: event.ReasonOrderCancelled}))
}

// clocked returns a builder of orderID's events that occur 1 s, 2 s, … after base, in the order built.
func clocked(t testing.TB, orderID string, base time.Time) func(event.Type, any) event.Envelope {
	step := 0
	f := event.Factory{Producer: "test", Now: func() time.Time { step++; return base.Add(time.Duration(step) * time.Second) }}
	return func(typ event.Type, p any) event.Envelope {
		e, err := f.New(typ, orderID, p)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
}

// withID rewrites the order id so that every permutation run gets its own row.
func withID(evs []event.Envelope, id string) []event.Envelope {
	out := make([]event.Envelope, len(evs))
	for i, e := range evs {
		var p map[string]any
		_ = json.Unmarshal(e.Payload, &p)
		if _, ok := p["orderId"]; ok {
			p["orderId"] = id
		}
		e.Payload, _ = json.Marshal(p)
		e.OrderID, e.CorrelationID = id, id
		out[i] = e
	}
	return out
}

func permutations(n int) [][]int {
	var out [][]int
	var rec func(a []int, k int)
	rec = func(a []int, k int) {
		if k == len(a) {
			out = append(out, append([]int(nil), a...))
			return
		}
		for i := k; i < len(a); i++ {
			a[k], a[i] = a[i], a[k]
			rec(a, k+1)
			a[k], a[i] = a[i], a[k]
		}
	}
	a := make([]int, n)
	for i := range a {
		a[i] = i
	}
	rec(a, 0)
	return out
}

func normalized(t testing.TB, v View) string {
	v.OrderID = ""
	b, _ := json.Marshal(v)
	return string(b)
}

// runPermutation applies evs in the given order with duplicates injected, split between two
// projectors running concurrently, while a reader checks the status never goes backwards.
func runPermutation(t testing.TB, st Store, evs []event.Envelope, order []int, rng *rand.Rand) View {
	t.Helper()
	ctx := context.Background()
	seq := make([]event.Envelope, 0, len(order)*2)
	for _, i := range order {
		seq = append(seq, evs[i])
		if rng.IntN(3) == 0 { // a duplicate, somewhere later
			seq = append(seq, evs[order[rng.IntN(len(order))]])
		}
	}
	projA, projB := NewProjector(st, prometheus.NewRegistry()), NewProjector(st, prometheus.NewRegistry())
	id := evs[0].OrderID
	done := make(chan struct{})
	var readerErr error // written by the reader goroutine, read after wg.Wait
	var wg sync.WaitGroup
	wg.Go(func() {
		last := -1
		for {
			select {
			case <-done:
				return
			default:
			}
			v, err := st.Get(ctx, id)
			if err != nil && !errors.Is(err, ErrNotFound) {
				readerErr = fmt.Errorf("reading a partly projected order: %w", err) // a reader sees every intermediate state
				return
			}
			if err == nil && v.Status != "" {
				if r, _ := event.StatusRank(v.Status); r < last {
					readerErr = &regression{from: last, to: r}
					return
				} else {
					last = r
				}
			}
		}
	})
	// Projector A applies its share one event at a time, B in concurrent batches of three.
	var pw sync.WaitGroup
	pw.Go(func() {
		for i := 0; i < len(seq); i += 2 {
			if err := projA.Handle(ctx, []event.Envelope{seq[i]}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	pw.Go(func() {
		var batch []event.Envelope
		for i := 1; i < len(seq); i += 2 {
			batch = append(batch, seq[i])
			if len(batch) == 3 || i+2 >= len(seq) {
				if err := projB.Handle(ctx, batch); err != nil {
					t.Error(err)
					return
				}
				batch = nil
			}
		}
	})
	pw.Wait()
	close(done)
	wg.Wait()
	if readerErr != nil {
		t.Fatalf("arrival order %v: %v", order, readerErr)
	}
	v, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type regression struct{ from, to int }

func (r *regression) Error() string { return "status went backwards" }

// contract runs the convergence suite against a store. full=true tries all 5040 orders of the 7
// events; otherwise all 120 orders of the first five plus a random sample of full orders.
func contract(t *testing.T, newStore func() Store, full bool, sample int) {
	rng := rand.New(rand.NewPCG(1, 2))
	st := newStore()
	ref := saga(t, uuid.NewString())
	var want string
	{
		evs := withID(ref, uuid.NewString())
		for _, e := range evs {
			if err := NewProjector(st, prometheus.NewRegistry()).Handle(context.Background(), []event.Envelope{e}); err != nil {
				t.Fatal(err)
			}
		}
		v, _ := st.Get(context.Background(), evs[0].OrderID)
		want = normalized(t, v)
		if v.Status != StatusDeliveryAssigned || v.EstimatedDeliveryTime == nil || v.PaymentID == nil || *v.PaymentID != 9 ||
			v.TotalAmount.String() != "42.50" || v.CustomerID != "cust-7" || v.DriverName != "Ada Lovelace" {
			t.Fatalf("in-order fold gave %s", want)
		}
		// The ETA shown is the one of the newest eta.updated (49 min), not the largest.
		if got := v.EstimatedDeliveryTime.Sub(ref[0].OccurredAt.Add(-time.Second)); got != 49*time.Minute {
			t.Fatalf("ETA %v, want the latest update (49m)", got)
		}
		// Timestamps are event times.
		if !v.CreatedAt.Equal(ref[0].OccurredAt) || !v.UpdatedAt.Equal(ref[3].OccurredAt) || !v.LastEventAt.Equal(ref[6].OccurredAt) {
			t.Fatalf("view timestamps %v %v %v", v.CreatedAt, v.UpdatedAt, v.LastEventAt)
		}
	}
	// An order known only from a later event (order.created not projected yet) reads as a partial
	// view, not an error: readers see such rows whenever events arrive out of order.
	{
		evs := withID(ref, uuid.NewString())
		if err := NewProjector(st, prometheus.NewRegistry()).Handle(context.Background(), []event.Envelope{evs[4]}); err != nil {
			t.Fatal(err)
		}
		v, err := st.Get(context.Background(), evs[0].OrderID)
		if err != nil || v.TotalAmount != nil || v.Status != "" || v.EstimatedDeliveryTime == nil {
			t.Fatalf("partial view %+v, %v; want the ETA only, no status, no total", v, err)
		}
	}
	var orders [][]int
	if full {
		orders = permutations(7)
	} else {
		for _, p := range permutations(5) {
			orders = append(orders, append(p, 5, 6))
		}
		for i := 0; i < sample; i++ {
			orders = append(orders, rng.Perm(7))
		}
	}
	for _, order := range orders {
		evs := withID(ref, uuid.NewString())
		got := normalized(t, runPermutation(t, st, evs, order, rng))
		if got != want {
			t.Fatalf("order %v converged to\n%s\nwant\n%s", order, got, want)
		}
	}
	t.Logf("%d arrival orders converged to the same row", len(orders))

	// A cancelled order converges to CANCELLED (rank 5 outranks every status it can follow) with
	// its reason and refund, whatever the arrival order.
	cancelled := cancelledSaga(t, uuid.NewString())
	want = ""
	for i := 0; i < max(sample, 100); i++ {
		evs := withID(cancelled, uuid.NewString())
		v := runPermutation(t, st, evs, rng.Perm(len(evs)), rng)
		if v.Status != StatusCancelled || v.CancelReason != event.ReasonCustomerRequest || v.CancelledAt == nil ||
			!v.CancelledAt.Equal(evs[5].OccurredAt) || v.RefundedAt == nil || v.PaymentID == nil {
			t.Fatalf("cancelled order folded to %+v", v)
		}
		got := normalized(t, v)
		if want == "" {
			want = got
		} else if got != want {
			t.Fatalf("cancelled order converged to\n%s\nwant\n%s", got, want)
		}
	}
}

func TestMemoryStoreConverges(t *testing.T) {
	contract(t, func() Store { return NewMemory() }, true, 0)
}

func TestFoldRejectsBadPayload(t *testing.T) {
	e, _ := event.Factory{Producer: "x"}.New(event.PaymentFailed, "o", map[string]any{"paymentId": "nope"})
	if _, err := Fold(e); err == nil {
		t.Fatal("bad payload folded")
	}
}
