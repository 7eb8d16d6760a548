package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/delivery"
	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/inventory"
	"github.com/orderflow/orderflow/internal/order"
	"github.com/orderflow/orderflow/internal/payment"
	"github.com/orderflow/orderflow/internal/platform/inbox"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/query"
	"github.com/orderflow/orderflow/internal/testkit"
)

type world struct {
	cfg   Config
	conns map[string]*pgx.Conn
	store *query.Cassandra
	order string
}

// consistentWorld builds fresh stores holding one complete, consistent order.
func consistentWorld(t *testing.T) world {
	t.Helper()
	testkit.Integration(t)
	ctx := testkit.Context(t, 2*time.Minute)
	w := world{conns: map[string]*pgx.Conn{}, order: uuid.NewString()}
	w.cfg = Config{DBs: map[string]string{}, DriverCapacity: 5, Quiesce: time.Second, MaxReport: 5,
		Groups: []string{testkit.Name("nogroup")}}
	w.cfg.Postgres = testkit.PGConfig()
	w.cfg.Kafka = testkit.KafkaConfig()
	w.cfg.Cassandra = testkit.CassandraConfig(t)
	migs := map[string][]pg.Migrations{
		"order":     {outbox.Migrations(), order.Migrations()},
		"inventory": {outbox.Migrations(), inbox.Migrations(), inventory.Migrations()},
		"payment":   {outbox.Migrations(), payment.Migrations()},
		"delivery":  {outbox.Migrations(), inbox.Migrations(), delivery.Migrations()},
	}
	for name, m := range migs {
		c := testkit.NewDatabase(t)
		pool, err := pg.Open(ctx, c, m...)
		if err != nil {
			t.Fatal(err)
		}
		pool.Close()
		conn, err := pgx.Connect(ctx, c.URL(c.Database))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		w.conns[name], w.cfg.DBs[name] = conn, c.Database
	}
	exec := func(db, sql string, args ...any) {
		t.Helper()
		if _, err := w.conns[db].Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	id := w.order
	now := time.Now().UTC().Truncate(time.Millisecond)
	eta := now.Add(40 * time.Minute)
	exec("order", `INSERT INTO orders (order_id, customer_id, currency, total_amount, created_at, status, status_rank, status_at) VALUES ($1, 'c', 'EUR', 20.00, $2, 'DELIVERY_ASSIGNED', 3, $2)`, id, now)
	exec("order", `INSERT INTO outbox (event_id, event_type, topic, record_key, value, sent_at) VALUES ($1, 'order.created', 'raw.order-events', $2, '{}', now())`, uuid.NewString(), id)
	exec("inventory", `INSERT INTO stock (item_id, name, available, reserved, on_hand) VALUES ('A', 'a', 8, 2, 10)`)
	exec("inventory", `INSERT INTO reservations (reservation_id, order_id, status, created_at) VALUES ('6ba7b810-9dad-11d1-80b4-00c04fd430c8', $1, 'RESERVED', now())`, id)
	exec("inventory", `INSERT INTO reservation_items VALUES ('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'A', 2)`)
	exec("payment", `INSERT INTO payments (order_id, idempotency_key, customer_id, amount, currency, status, created_at) VALUES ($1, $2, 'c', 20.00, 'EUR', 'AUTHORIZED', now())`, id, uuid.NewString())
	exec("delivery", `INSERT INTO drivers (driver_id, name, zone, active_deliveries) VALUES (1, 'Ada', 'north', 1)`)
	exec("delivery", `INSERT INTO deliveries (delivery_id, order_id, driver_id, zone, status, eta, assigned_at, eta_checked_at) VALUES ('DEL-000000000001', $1, 1, 'north', 'ASSIGNED', $2, now(), now())`, id, eta)

	store, err := query.Open(ctx, w.cfg.Cassandra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	w.store = store
	var payID int64
	_ = w.conns["payment"].QueryRow(ctx, `SELECT payment_id FROM payments WHERE order_id = $1`, id).Scan(&payID)
	f := event.Factory{Producer: "test"}
	amount := event.MustMoney("20.00")
	evs := []struct {
		t event.Type
		p any
	}{
		{event.OrderCreated, event.OrderCreatedPayload{CustomerID: "c", TotalAmount: amount, Currency: "EUR", Items: []event.Item{{ItemID: "A", Quantity: 2, UnitPrice: event.MustMoney("10.00")}}}},
		{event.InventoryReserved, event.InventoryPayload{OrderID: id, Amount: amount, Currency: "EUR", CustomerID: "c", ReservationID: "r"}},
		{event.PaymentAuthorized, event.PaymentPayload{PaymentID: payID, OrderID: id, Amount: amount, Currency: "EUR", Status: "AUTHORIZED"}},
		{event.DeliveryAssigned, event.DeliveryPayload{OrderID: id, DeliveryID: "DEL-000000000001", DriverName: "Ada", Status: "ASSIGNED", EstimatedDeliveryTime: eta}},
	}
	proj := query.NewProjector(w.store, prometheus.NewRegistry())
	for _, x := range evs {
		e, _ := f.New(x.t, id, x.p)
		if err := proj.Handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w world) run(t *testing.T) map[string]Check {
	t.Helper()
	rep, err := Verify(testkit.Context(t, time.Minute), w.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Check{}
	for _, c := range rep.Checks {
		out[c.Name] = c
	}
	return out
}

func mustPass(t *testing.T, checks map[string]Check, names ...string) {
	t.Helper()
	for _, n := range names {
		if c, ok := checks[n]; !ok || !c.Pass {
			t.Fatalf("%s: %+v", n, c)
		}
	}
}

func mustFail(t *testing.T, checks map[string]Check, name, offender string) {
	t.Helper()
	c := checks[name]
	if c.Pass || len(c.Offense) == 0 {
		t.Fatalf("%s passed although violated: %+v", name, c)
	}
	found := false
	for _, o := range c.Offense {
		found = found || (offender != "" && len(o) >= len(offender) && o[:len(offender)] == offender)
	}
	if !found {
		t.Fatalf("%s does not name %s: %v", name, offender, c.Offense)
	}
}

var all = []string{"quiescence", "one payment per order", "no charge after rejection", "stock conservation",
	"every order has order.created", "every order has a view row", "every order terminal", "view equals sources of truth", "drivers within capacity", "cancellations compensated"}

func TestConsistentWorldPasses(t *testing.T) {
	w := consistentWorld(t)
	mustPass(t, w.run(t), all...)
}

func TestDoublePaymentIsReported(t *testing.T) {
	w := consistentWorld(t)
	ctx := context.Background()
	if _, err := w.conns["payment"].Exec(ctx, `ALTER TABLE payments DROP CONSTRAINT payments_order_id_key`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.conns["payment"].Exec(ctx, `INSERT INTO payments (order_id, idempotency_key, customer_id, amount, currency, status, created_at)
		VALUES ($1, $2, 'c', 20.00, 'EUR', 'AUTHORIZED', now())`, w.order, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	mustFail(t, w.run(t), "one payment per order", w.order)
}

func TestLostUnitOfStockIsReported(t *testing.T) {
	w := consistentWorld(t)
	if _, err := w.conns["inventory"].Exec(context.Background(), `UPDATE stock SET available = available - 1 WHERE item_id = 'A'`); err != nil {
		t.Fatal(err)
	}
	checks := w.run(t)
	mustFail(t, checks, "stock conservation", "A:")
	mustPass(t, checks, "one payment per order", "view equals sources of truth")
}

func TestStaleViewRowIsReported(t *testing.T) {
	w := consistentWorld(t)
	// The view goes back to an older state than the sources say (as a lost projection would leave it).
	if err := w.store.S.Query(`UPDATE orders USING TIMESTAMP 9000000000000000000 SET status = 'PAYMENT_AUTHORIZED' WHERE order_id = ?`, w.order).Exec(); err != nil {
		t.Fatal(err)
	}
	mustFail(t, w.run(t), "view equals sources of truth", w.order)
}

// TestOrderServiceBehindTheViewIsReported: order-service's status must equal the view's once quiet.
func TestOrderServiceBehindTheViewIsReported(t *testing.T) {
	w := consistentWorld(t)
	if _, err := w.conns["order"].Exec(context.Background(), `UPDATE orders SET status = 'PAYMENT_AUTHORIZED', status_rank = 2 WHERE order_id = $1`, w.order); err != nil {
		t.Fatal(err)
	}
	mustFail(t, w.run(t), "view equals sources of truth", w.order+": view DELIVERY_ASSIGNED, order-service says PAYMENT_AUTHORIZED")
}

func TestDriverOverCapacityIsReported(t *testing.T) {
	w := consistentWorld(t)
	if _, err := w.conns["delivery"].Exec(context.Background(), `UPDATE drivers SET active_deliveries = 6 WHERE driver_id = 1`); err != nil {
		t.Fatal(err)
	}
	mustFail(t, w.run(t), "drivers within capacity", "driver 1")
}

// TestUncompensatedCancellationIsReported: delivery-service accepted a cancellation, but the order
// still holds its stock, its charge and its driver: each is reported, and the view (still
// DELIVERY_ASSIGNED) no longer matches the sources (CANCELLED).
func TestUncompensatedCancellationIsReported(t *testing.T) {
	w := consistentWorld(t)
	if _, err := w.conns["delivery"].Exec(context.Background(), `INSERT INTO cancellations (order_id, reason, cause_event_id, decided_at)
		VALUES ($1, 'CUSTOMER_REQUEST', $2, now())`, w.order, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	checks := w.run(t)
	mustFail(t, checks, "cancellations compensated", w.order+": cancelled but its reservation still holds stock")
	for _, want := range []string{"payment is still charged", "its delivery is ASSIGNED"} {
		found := false
		for _, o := range checks["cancellations compensated"].Offense {
			found = found || strings.Contains(o, want)
		}
		if !found {
			t.Errorf("no offense names %q: %v", want, checks["cancellations compensated"].Offense)
		}
	}
	mustFail(t, checks, "view equals sources of truth", w.order+": view DELIVERY_ASSIGNED, sources say CANCELLED")
}

// TestRefundOfADeliveredOrderIsReported: a refund without an accepted cancellation, of an order
// that was delivered, is reported.
func TestRefundOfADeliveredOrderIsReported(t *testing.T) {
	w := consistentWorld(t)
	ctx := context.Background()
	if _, err := w.conns["delivery"].Exec(ctx, `UPDATE deliveries SET status = 'DELIVERED', delivered_at = now() WHERE order_id = $1`, w.order); err != nil {
		t.Fatal(err)
	}
	if _, err := w.conns["delivery"].Exec(ctx, `UPDATE drivers SET active_deliveries = 0`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.conns["payment"].Exec(ctx, `UPDATE payments SET status = 'REFUNDED', refunded_at = now() WHERE order_id = $1`, w.order); err != nil {
		t.Fatal(err)
	}
	checks := w.run(t)
	mustFail(t, checks, "cancellations compensated", w.order+": refunded without an accepted cancellation")
	mustPass(t, checks, "one payment per order", "stock conservation")
}
