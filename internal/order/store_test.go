package order

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

func realAPI(t *testing.T) (http.Handler, *pgxpool.Pool) {
	t.Helper()
	testkit.Integration(t)
	pool, err := pg.Open(testkit.Context(t, 30*time.Second), testkit.NewDatabase(t), outbox.Migrations(), Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	mux := httpx.NewMux(httpx.GuardConfig{})
	(&api{store: &store{pool: pool, factory: event.Factory{Producer: Name}, now: time.Now},
		limits: Limits{}.withDefaults(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}).routes(mux)
	return mux, pool
}

func do(h http.Handler, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

const validBody = `{"customerId":"cust-1","currency":"EUR","items":[{"itemId":"SKU-001","quantity":2,"unitPrice":19.99},{"itemId":"SKU-002","quantity":1,"unitPrice":5}]}`

func TestCreateAndGetWithItems(t *testing.T) {
	h, pool := realAPI(t)
	w := do(h, "POST", "/api/orders", validBody, nil)
	if w.Code != 201 {
		t.Fatalf("create %d %s", w.Code, w.Body.String())
	}
	var created Order
	_ = json.Unmarshal(w.Body.Bytes(), &created)
	if w.Header().Get("Location") != "/api/orders/"+created.OrderID || created.Status != "CREATED" || created.TotalAmount.String() != "44.98" {
		t.Fatalf("created %+v location %q", created, w.Header().Get("Location"))
	}
	g := do(h, "GET", "/api/orders/"+created.OrderID, "", nil)
	var got Order
	_ = json.Unmarshal(g.Body.Bytes(), &got)
	if g.Code != 200 || len(got.Items) != 2 || got.Items[0].UnitPrice.String() != "19.99" || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Fatalf("get %d %s", g.Code, g.Body.String())
	}
	// The order.created event sits in the outbox with the same data.
	var value []byte
	if err := pool.QueryRow(context.Background(), `SELECT value FROM outbox WHERE record_key = $1`, created.OrderID).Scan(&value); err != nil {
		t.Fatal(err)
	}
	e, err := event.Decode(value)
	if err != nil {
		t.Fatal(err)
	}
	p, err := event.DecodePayload[event.OrderCreatedPayload](e)
	if err != nil || p.TotalAmount.String() != "44.98" || len(p.Items) != 2 || e.CorrelationID != created.OrderID {
		t.Fatalf("event %+v %+v %v", e, p, err)
	}
	if w := do(h, "GET", "/api/orders/0193a0e0-0000-7000-8000-000000000000", "", nil); w.Code != 404 {
		t.Fatalf("unknown order: %d", w.Code)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h, pool := realAPI(t)
	const n = 20
	codes := make([]int, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			w := do(h, "POST", "/api/orders", validBody, map[string]string{"Idempotency-Key": "key-1"})
			codes[i] = w.Code
			var o Order
			_ = json.Unmarshal(w.Body.Bytes(), &o)
			ids[i] = o.OrderID
		})
	}
	wg.Wait()
	created := 0
	for i := range codes {
		if codes[i] == 201 {
			created++
		} else if codes[i] != 200 {
			t.Fatalf("request %d: status %d", i, codes[i])
		}
		if ids[i] != ids[0] || ids[i] == "" {
			t.Fatalf("different orders returned: %v", ids)
		}
	}
	var orders, events int
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&orders)
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&events)
	if created != 1 || orders != 1 || events != 1 {
		t.Fatalf("created %d, orders %d, events %d; want 1 each", created, orders, events)
	}
	// Same key, formatted differently but meaning the same: still the original.
	same := strings.ReplaceAll(validBody, "5}", "5.00}")
	if w := do(h, "POST", "/api/orders", same, map[string]string{"Idempotency-Key": "key-1"}); w.Code != 200 {
		t.Fatalf("equivalent body: %d", w.Code)
	}
	other := strings.ReplaceAll(validBody, `"quantity":2`, `"quantity":3`)
	if w := do(h, "POST", "/api/orders", other, map[string]string{"Idempotency-Key": "key-1"}); w.Code != 422 {
		t.Fatalf("different body with same key: %d %s", w.Code, w.Body.String())
	}
}

func TestDatabaseOutageIs503NotNotFound(t *testing.T) {
	testkit.Integration(t)
	pool, err := pgxpool.New(context.Background(), "postgres://postgres:postgres@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	mux := httpx.NewMux(httpx.GuardConfig{})
	(&api{store: &store{pool: pool, factory: event.Factory{Producer: Name}, now: time.Now},
		limits: Limits{}.withDefaults(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}).routes(mux)
	if w := do(mux, "GET", "/api/orders/0193a0e0-0000-7000-8000-000000000000", "", nil); w.Code != 503 {
		t.Fatalf("GET during outage: %d", w.Code)
	}
	if w := do(mux, "POST", "/api/orders", validBody, nil); w.Code != 503 {
		t.Fatalf("POST during outage: %d", w.Code)
	}
}

// An order without an Idempotency-Key is written as one batch outside an explicit transaction; it
// must still be all or nothing: a line the database refuses (here a quantity the CHECK constraint
// rejects, which validation would normally stop first) leaves no order, no line and no event.
func TestCreateIsAllOrNothing(t *testing.T) {
	_, pool := realAPI(t)
	ctx := testkit.Context(t, 30*time.Second)
	st := &store{pool: pool, factory: event.Factory{Producer: Name}, now: time.Now}
	o := newOrder{CustomerID: "cust-1", Currency: "EUR", Total: event.MustMoney("3.00"), Items: []event.Item{
		{ItemID: "SKU-001", Quantity: 1, UnitPrice: event.MustMoney("1.00")},
		{ItemID: "SKU-002", Quantity: 0, UnitPrice: event.MustMoney("2.00")}}}
	if _, _, err := st.create(ctx, o, ""); err == nil {
		t.Fatal("an order with a refused line was accepted")
	}
	var orders, items, events int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items), (SELECT count(*) FROM outbox)`).
		Scan(&orders, &items, &events); err != nil {
		t.Fatal(err)
	}
	if orders+items+events != 0 {
		t.Fatalf("after a failed create: %d orders, %d lines, %d events; want none", orders, items, events)
	}
	o.Items[1].Quantity = 1
	ord, _, err := st.create(ctx, o, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.get(ctx, ord.OrderID); err != nil || len(got.Items) != 2 {
		t.Fatalf("valid order: %+v, %v", got, err)
	}
}
