package inventory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/orderflow/orderflow/internal/catalog"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/inbox"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

func newStore(t *testing.T, items ...catalog.Item) *store {
	t.Helper()
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	pool, err := pg.Open(ctx, testkit.NewDatabase(t), outbox.Migrations(), inbox.Migrations(), Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := &store{pool: pool, inbox: inbox.New(event.GroupInventory, prometheus.NewRegistry()),
		factory: event.Factory{Producer: Name}, now: time.Now}
	if err := s.seed(ctx, items); err != nil {
		t.Fatal(err)
	}
	return s
}

func orderEvent(t *testing.T, items ...event.Item) (event.Envelope, event.OrderCreatedPayload) {
	p := event.OrderCreatedPayload{CustomerID: "c", Currency: "EUR", TotalAmount: event.MustMoney("10.00"), Items: items}
	e, err := event.Factory{Producer: "order-service"}.New(event.OrderCreated, uuid.NewString(), p)
	if err != nil {
		t.Fatal(err)
	}
	return e, p
}

func item(id string, q int) event.Item {
	return event.Item{ItemID: id, Quantity: q, UnitPrice: event.MustMoney("1.00")}
}

// outboxEvents returns the events the store wrote for orderID, in order.
func outboxEvents(t *testing.T, s *store, orderID string) []event.Envelope {
	t.Helper()
	return testkit.OutboxEvents(t, s.pool, orderID)
}

func (s *store) mustItem(t *testing.T, id string) Item {
	t.Helper()
	it, err := s.item(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// TestConcurrentReservationsNeverOversell: 200 orders race for 50 units.
func TestConcurrentReservationsNeverOversell(t *testing.T) {
	s := newStore(t, catalog.Item{ItemID: "HOT", Name: "Hot item", Stock: 50}, catalog.Item{ItemID: "OTHER", Name: "o", Stock: 1000})
	ctx := testkit.Context(t, 2*time.Minute)
	var wg sync.WaitGroup
	results := make(chan outcome, 200)
	for i := 0; i < 200; i++ {
		wg.Go(func() {
			// Lines in both orders of item ids, to provoke lock-order deadlocks if locking were unordered.
			items := []event.Item{item("HOT", 1), item("OTHER", 1)}
			if i%2 == 0 {
				items = []event.Item{item("OTHER", 1), item("HOT", 1)}
			}
			e, p := orderEvent(t, items...)
			out, err := s.reserve(ctx, e, p)
			if err != nil {
				t.Error(err)
				return
			}
			results <- out
		})
	}
	wg.Wait()
	close(results)
	reserved, rejected := 0, 0
	for r := range results {
		switch {
		case r.result == "reserved":
			reserved++
		case r.result == "rejected" && r.reason == event.ReasonInsufficientStock:
			rejected++
		default:
			t.Fatalf("unexpected outcome %+v", r)
		}
	}
	hot, other := s.mustItem(t, "HOT"), s.mustItem(t, "OTHER")
	if reserved != 50 || rejected != 150 || hot.Available != 0 || hot.Reserved != 50 {
		t.Fatalf("reserved %d rejected %d, HOT %+v", reserved, rejected, hot)
	}
	// All or nothing: OTHER moved exactly with HOT.
	if other.Reserved != 50 || other.Available != 950 {
		t.Fatalf("OTHER %+v: a rejected order kept part of its lines", other)
	}
	var held int
	_ = s.pool.QueryRow(ctx, `SELECT coalesce(sum(ri.quantity), 0) FROM reservation_items ri
		JOIN reservations r USING (reservation_id) WHERE r.status = 'RESERVED' AND ri.item_id = 'HOT'`).Scan(&held)
	if held != hot.Reserved || hot.Available+held != 50 {
		t.Fatalf("conservation broken: available %d + held %d != 50 (reserved column %d)", hot.Available, held, hot.Reserved)
	}
}

func TestRejectionReasonsAndPayloads(t *testing.T) {
	s := newStore(t, catalog.Item{ItemID: "A", Name: "a", Stock: 3})
	ctx := testkit.Context(t, 30*time.Second)

	e, p := orderEvent(t, item("A", 1), item("NOPE", 2))
	if out, err := s.reserve(ctx, e, p); err != nil || out.reason != event.ReasonUnknownItem {
		t.Fatalf("unknown item: %+v %v", out, err)
	}
	evs := outboxEvents(t, s, e.OrderID)
	if len(evs) != 1 || evs[0].EventType != event.InventoryRejected || evs[0].CausationID != e.EventID || evs[0].CorrelationID != e.OrderID {
		t.Fatalf("events %+v", evs)
	}
	rej, _ := event.DecodePayload[event.InventoryPayload](evs[0])
	if rej.Reason != event.ReasonUnknownItem || len(rej.Items) != 1 || rej.Items[0].ItemID != "NOPE" || rej.Amount.String() != "10.00" {
		t.Fatalf("payload %+v", rej)
	}
	// The same item on two lines counts together: 2+2 > 3.
	e2, p2 := orderEvent(t, item("A", 2), item("A", 2))
	if out, _ := s.reserve(ctx, e2, p2); out.reason != event.ReasonInsufficientStock {
		t.Fatalf("aggregated lines: %+v", out)
	}
	rej2, _ := event.DecodePayload[event.InventoryPayload](outboxEvents(t, s, e2.OrderID)[0])
	if len(rej2.Items) != 1 || rej2.Items[0].Requested != 4 || rej2.Items[0].Available != 3 {
		t.Fatalf("short items %+v", rej2.Items)
	}
	if a := s.mustItem(t, "A"); a.Available != 3 || a.Reserved != 0 {
		t.Fatalf("rejections changed stock: %+v", a)
	}
}

func TestCompensationReleasesOnce(t *testing.T) {
	s := newStore(t, catalog.Item{ItemID: "A", Name: "a", Stock: 10})
	ctx := testkit.Context(t, 30*time.Second)
	e, p := orderEvent(t, item("A", 4))
	if out, err := s.reserve(ctx, e, p); err != nil || out.result != "reserved" {
		t.Fatalf("%+v %v", out, err)
	}
	// Redelivery of the same order.created and a second event for the same order change nothing.
	if out, _ := s.reserve(ctx, e, p); !out.duplicate {
		t.Fatal("redelivered order.created not recognised")
	}
	e.EventID = uuid.NewString()
	if out, _ := s.reserve(ctx, e, p); !out.duplicate {
		t.Fatal("second order.created for the same order not recognised")
	}
	if a := s.mustItem(t, "A"); a.Available != 6 || a.Reserved != 4 {
		t.Fatalf("after reserve %+v", a)
	}
	failed, _ := event.Factory{Producer: "payment-service"}.Caused(e, event.PaymentFailed,
		event.PaymentPayload{PaymentID: 1, OrderID: e.OrderID, Amount: p.TotalAmount, Currency: "EUR", Status: event.PaymentStatusFailed})
	fp, _ := event.DecodePayload[event.PaymentPayload](failed)
	if out, err := s.release(ctx, failed, fp); err != nil || out.result != "released" {
		t.Fatalf("release %+v %v", out, err)
	}
	if a := s.mustItem(t, "A"); a.Available != 10 || a.Reserved != 0 {
		t.Fatalf("after release %+v", a)
	}
	if out, _ := s.release(ctx, failed, fp); !out.duplicate {
		t.Fatal("duplicate payment.failed applied again")
	}
	failed.EventID = uuid.NewString() // a distinct payment.failed for the same order
	if out, _ := s.release(ctx, failed, fp); out.result != "ignored" {
		t.Fatalf("second release: %+v", out)
	}
	if a := s.mustItem(t, "A"); a.Available != 10 || a.Reserved != 0 {
		t.Fatalf("duplicate release changed stock: %+v", a)
	}
	evs := outboxEvents(t, s, e.OrderID)
	if len(evs) != 2 || evs[0].EventType != event.InventoryReserved || evs[1].EventType != event.InventoryReleased {
		t.Fatalf("events %v", evs)
	}
	rel, _ := event.DecodePayload[event.InventoryReleasedPayload](evs[1])
	res, _ := event.DecodePayload[event.InventoryPayload](evs[0])
	if rel.ReservationID == "" || rel.ReservationID != res.ReservationID {
		t.Fatalf("released %+v reserved %+v", rel, res)
	}
}

func TestAdminAPI(t *testing.T) {
	var items []catalog.Item
	for i := 0; i < 7; i++ {
		items = append(items, catalog.Item{ItemID: fmt.Sprintf("I-%02d", i), Name: "n", Stock: i})
	}
	s := newStore(t, items...)
	mux := httpx.NewMux(httpx.GuardConfig{})
	(&api{store: s, log: slog.New(slog.NewTextHandler(io.Discard, nil)), tokens: httpx.NewPageTokens("test")}).routes(mux)
	do := func(method, path, body string) (int, map[string]any) {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1" // an operator on the machine (no ADMIN_TOKEN set)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		var m map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &m)
		return w.Code, m
	}
	if code, m := do("GET", "/api/inventory/I-03", ""); code != 200 || m["available"] != 3.0 {
		t.Fatalf("get %d %v", code, m)
	}
	if code, _ := do("GET", "/api/inventory/none", ""); code != 404 {
		t.Fatalf("unknown item %d", code)
	}
	if code, m := do("PUT", "/api/inventory/I-03", `{"available":42}`); code != 200 || m["available"] != 42.0 {
		t.Fatalf("put %d %v", code, m)
	}
	for _, bad := range []string{`{"available":-1}`, `{}`, `{"available":"x"}`, `{"available":1.5}`} {
		if code, _ := do("PUT", "/api/inventory/I-03", bad); code != 400 {
			t.Fatalf("put %s: %d", bad, code)
		}
	}
	// Found by Schemathesis: a page token or item id that is not UTF-8 is the client's error (400),
	// not a database outage (503).
	// A page token is sealed: a bare item id (the old format) is refused too.
	for _, path := range []string{"/api/inventory?pageToken=" + base64.RawURLEncoding.EncodeToString([]byte{0xff, 0xfe}),
		"/api/inventory?pageToken=" + base64.RawURLEncoding.EncodeToString([]byte("I-02")),
		"/api/inventory/%FF%FE", "/api/inventory/a%01b"} {
		if code, m := do("GET", path, ""); code != 400 {
			t.Errorf("GET %s: %d %v", path, code, m)
		}
	}
	var seen []string
	tok := ""
	for pages := 0; pages < 10; pages++ {
		_, m := do("GET", "/api/inventory?limit=3&pageToken="+tok, "")
		for _, it := range m["items"].([]any) {
			seen = append(seen, it.(map[string]any)["itemId"].(string))
		}
		next, _ := m["nextPageToken"].(string)
		if next == "" {
			break
		}
		tok = next
	}
	if len(seen) != 7 || seen[0] != "I-00" || seen[6] != "I-06" {
		t.Fatalf("paginated %v", seen)
	}
	if code, _ := do("GET", "/api/inventory?limit=0", ""); code != 400 {
		t.Fatal("limit 0 accepted")
	}
}

// TestConcurrentBatches: ten batches of twenty orders (with a duplicate inside each batch and a
// payment.failed for an earlier order) race for 50 units in separate transactions.
func TestConcurrentBatches(t *testing.T) {
	s := newStore(t, catalog.Item{ItemID: "HOT", Name: "Hot", Stock: 50}, catalog.Item{ItemID: "OTHER", Name: "o", Stock: 1000})
	c := &consumer{store: s, metrics: newMetrics(prometheus.NewRegistry())}
	ctx := testkit.Context(t, 2*time.Minute)
	var wg sync.WaitGroup
	for b := 0; b < 10; b++ {
		wg.Go(func() {
			var batch []event.Envelope
			for i := 0; i < 20; i++ {
				items := []event.Item{item("HOT", 1), item("OTHER", 1)}
				if i%2 == 0 {
					items = []event.Item{item("OTHER", 1), item("HOT", 1)}
				}
				e, _ := orderEvent(t, items...)
				batch = append(batch, e)
				if i == 5 {
					batch = append(batch, e) // redelivered within the same batch
				}
			}
			if err := c.handle(ctx, batch); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	hot, other := s.mustItem(t, "HOT"), s.mustItem(t, "OTHER")
	if hot.Reserved != 50 || hot.Available != 0 || other.Reserved != 50 || other.Available != 950 {
		t.Fatalf("HOT %+v OTHER %+v", hot, other)
	}
	var reservations, rejected int
	_ = s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'RESERVED'), count(*) FILTER (WHERE status = 'REJECTED') FROM reservations`).Scan(&reservations, &rejected)
	if reservations != 50 || rejected != 150 {
		t.Fatalf("reservations %d rejected %d", reservations, rejected)
	}
}

// TestBatchEqualsOneByOne applies one random event stream (orders of known, unknown and scarce
// items, duplicates, payment failures for earlier orders, unrelated events) to two stores through
// the handler: one event at a time (as the runner does after splitting a failed batch), and in
// batches of random sizes. Both end identical.
func TestBatchEqualsOneByOne(t *testing.T) {
	items := []catalog.Item{{ItemID: "A", Name: "a", Stock: 30}, {ItemID: "B", Name: "b", Stock: 12}, {ItemID: "C", Name: "c", Stock: 1000}}
	one, batched := newStore(t, items...), newStore(t, items...)
	c1 := &consumer{store: one, metrics: newMetrics(prometheus.NewRegistry())}
	c2 := &consumer{store: batched, metrics: newMetrics(prometheus.NewRegistry())}
	ctx := testkit.Context(t, 2*time.Minute)
	rng := rand.New(rand.NewPCG(3, 4))
	var stream []event.Envelope
	var orders []event.Envelope
	for i := 0; i < 400; i++ {
		switch r := rng.IntN(10); {
		case r < 6 || len(orders) == 0:
			ids := []string{"A", "B", "C", "NOPE"}
			var items []event.Item
			for n := 1 + rng.IntN(3); n > 0; n-- {
				id := ids[rng.IntN(3)]
				if rng.IntN(15) == 0 {
					id = "NOPE"
				}
				items = append(items, item(id, 1+rng.IntN(4)))
			}
			e, _ := orderEvent(t, items...)
			stream, orders = append(stream, e), append(orders, e)
		case r < 8:
			o := orders[rng.IntN(len(orders))]
			f, _ := event.Factory{Producer: "payment-service"}.Caused(o, event.PaymentFailed, event.PaymentPayload{
				PaymentID: int64(i + 1), OrderID: o.OrderID, Amount: event.MustMoney("1.00"), Currency: "EUR", Status: event.PaymentStatusFailed})
			stream = append(stream, f)
		case r < 9:
			stream = append(stream, stream[rng.IntN(len(stream))]) // redelivery
		default:
			a, _ := event.Factory{Producer: "payment-service"}.New(event.PaymentAuthorized, orders[0].OrderID, event.PaymentPayload{
				PaymentID: 1, OrderID: orders[0].OrderID, Amount: event.MustMoney("1.00"), Currency: "EUR", Status: event.PaymentStatusAuthorized})
			stream = append(stream, a)
		}
	}
	for _, e := range stream {
		if err := c1.handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	for len(stream) > 0 {
		n := min(len(stream), 1+rng.IntN(60))
		if err := c2.handle(ctx, stream[:n]); err != nil {
			t.Fatal(err)
		}
		stream = stream[n:]
	}
	snapshot := func(s *store) string {
		var out strings.Builder
		rows, _ := s.pool.Query(ctx, `SELECT item_id, available, reserved, on_hand FROM stock ORDER BY item_id`)
		for rows.Next() {
			var id string
			var a, r, h int
			_ = rows.Scan(&id, &a, &r, &h)
			fmt.Fprintf(&out, "%s %d %d %d\n", id, a, r, h)
		}
		rows.Close()
		rows, _ = s.pool.Query(ctx, `SELECT order_id, status, coalesce(reason, ''), (SELECT string_agg(item_id || ':' || quantity, ',' ORDER BY item_id)
			FROM reservation_items ri WHERE ri.reservation_id = r.reservation_id) FROM reservations r ORDER BY order_id`)
		for rows.Next() {
			var o, st, re string
			var its *string
			_ = rows.Scan(&o, &st, &re, &its)
			fmt.Fprintf(&out, "%s %s %s %v\n", o, st, re, its != nil && *its != "")
		}
		rows.Close()
		rows, _ = s.pool.Query(ctx, `SELECT record_key, string_agg(event_type, ',' ORDER BY id) FROM outbox GROUP BY record_key ORDER BY record_key`)
		for rows.Next() {
			var k, types string
			_ = rows.Scan(&k, &types)
			fmt.Fprintf(&out, "%s %s\n", k, types)
		}
		rows.Close()
		// The same events recorded as processed (events inventory ignores are not).
		rows, _ = s.pool.Query(ctx, `SELECT event_id::text FROM processed_events ORDER BY event_id`)
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			fmt.Fprintf(&out, "inbox %s\n", id)
		}
		rows.Close()
		return out.String()
	}
	a, b := snapshot(one), snapshot(batched)
	if a != b {
		t.Fatalf("batch and one-by-one differ:\n--- one by one\n%s\n--- batched\n%s", a, b)
	}
}

// reserve and release run the handler's store path for one event, as the runner does for a single
// event.
func (s *store) reserve(ctx context.Context, e event.Envelope, p event.OrderCreatedPayload) (outcome, error) {
	outs, err := s.apply(ctx, []event.Envelope{e}, map[int]event.OrderCreatedPayload{0: p})
	if err != nil {
		return outcome{}, err
	}
	return outs[0], nil
}

func (s *store) release(ctx context.Context, e event.Envelope, _ event.PaymentPayload) (outcome, error) {
	outs, err := s.apply(ctx, []event.Envelope{e}, nil)
	if err != nil {
		return outcome{}, err
	}
	return outs[0], nil
}
