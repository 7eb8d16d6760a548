package delivery

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// StatusCancelled is a delivery whose order was cancelled before it was delivered.
const StatusCancelled = "CANCELLED"

// lockOrders queues transaction-scoped advisory locks on the orders, in one order for every
// transaction (no deadlocks). Assignments and cancellations of an order take them first, so one
// of them always sees what the other committed: a cancellation never misses a delivery being
// assigned, and an assignment never misses a cancellation being decided.
func lockOrders(b *pgx.Batch, orders []string) {
	b.Queue(`SELECT pg_advisory_xact_lock(1684368489, k) FROM (SELECT DISTINCT hashtext(o) AS k FROM unnest($1::text[]) AS o ORDER BY k) AS s`, orders)
}

// decision is delivery-service's answer to one order.cancelled.
type decision struct {
	duplicate bool   // the event, or a cancellation of its order, was decided before
	refusal   string // non-empty: refused (the order was delivered)
	freed     bool   // an active delivery was cancelled and its driver freed
	dequeued  bool   // the order left the driver queue
}

// waiting marks, in held, an order found in the driver queue (it has no delivery row).
const waiting = "WAITING"

// held is what delivery-service holds for an order when its cancellation arrives.
type held struct {
	deliveryID, driverName, status string
	driverID                       int
}

// cancelAll decides the order.cancelled events es in one transaction of two round trips. The
// cut-off is the delivery: until delivery-service has marked the order DELIVERED, the cancellation
// is accepted — the order leaves the driver queue, an active delivery is CANCELLED and its driver
// freed, and no later payment.authorized assigns one — and delivery.cancelled tells payment and
// inventory to undo theirs. After it, cancellation.refused. Either way the decision is recorded
// once per order (cancellations); a second request for the order is a duplicate.
func (s *store) cancelAll(ctx context.Context, es []event.Envelope, reasons []string) ([]decision, error) {
	res := make([]decision, len(es))
	err := pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		clear(res)
		ids, orders := make([]string, len(es)), make([]string, 0, len(es))
		for i, e := range es {
			ids[i] = e.EventID
			orders = append(orders, e.OrderID)
		}
		fresh, decided, holds := map[string]bool{}, map[string]bool{}, map[string]held{}
		b := &pgx.Batch{}
		lockOrders(b, orders)
		s.inbox.Record(b, ids, func(id string) { fresh[id] = true })
		b.Queue(`SELECT order_id FROM cancellations WHERE order_id = ANY($1)`, orders).Query(func(rows pgx.Rows) error {
			var o string
			_, err := pgx.ForEachRow(rows, []any{&o}, func() error { decided[o] = true; return nil })
			return err
		})
		// Out of the queue first: an assignment from the queue in progress holds the row, and once it
		// commits, the delivery it made is read (and cancelled) below.
		b.Queue(`DELETE FROM waiting_orders WHERE order_id = ANY($1) RETURNING order_id`, orders).Query(func(rows pgx.Rows) error {
			var o string
			_, err := pgx.ForEachRow(rows, []any{&o}, func() error { holds[o] = held{status: waiting}; return nil })
			return err
		})
		b.Queue(`SELECT d.order_id, d.delivery_id, d.driver_id, dr.name, d.status FROM deliveries d JOIN drivers dr USING (driver_id)
			WHERE d.order_id = ANY($1) FOR UPDATE OF d`, orders).Query(func(rows pgx.Rows) error {
			var o string
			var h held
			_, err := pgx.ForEachRow(rows, []any{&o, &h.deliveryID, &h.driverID, &h.driverName, &h.status}, func() error { holds[o] = h; return nil })
			return err
		})
		if err := tx.Read(ctx, b); err != nil {
			return fmt.Errorf("read cancellations: %w", err)
		}
		now := s.now().UTC().Truncate(time.Millisecond)
		var freed []int
		var out []event.Envelope
		for i, e := range es {
			if !fresh[e.EventID] || decided[e.OrderID] {
				res[i].duplicate = true
				continue
			}
			decided[e.OrderID] = true
			h := holds[e.OrderID]
			p := event.CancellationPayload{OrderID: e.OrderID, Reason: reasons[i], DeliveryID: h.deliveryID, DriverName: h.driverName}
			typ := event.DeliveryCancelled
			switch h.status {
			case StatusDelivered:
				p.Refusal, res[i].refusal, typ = event.RefusalDelivered, event.RefusalDelivered, event.CancellationRefused
			case StatusAssigned:
				tx.Writes.Queue(`UPDATE deliveries SET status = 'CANCELLED', cancelled_at = $2 WHERE order_id = $1`, e.OrderID, now)
				freed, res[i].freed = append(freed, h.driverID), true
			case waiting:
				res[i].dequeued = true
			}
			tx.Writes.Queue(`INSERT INTO cancellations (order_id, reason, refusal, cause_event_id, decided_at) VALUES ($1, $2, NULLIF($3, ''), $4, $5)`,
				e.OrderID, reasons[i], p.Refusal, e.EventID, now)
			c, err := s.factory.Caused(e, typ, p)
			if err != nil {
				return err
			}
			c.OccurredAt = now
			out = append(out, c)
		}
		queueFreeDrivers(&tx.Writes, freed)
		return outbox.Caused(tx, out...)
	})
	return res, err
}

// queueFreeDrivers gives one unit of capacity back per entry of drivers, in driver order (every
// transaction that frees several drivers locks them in the same order).
func queueFreeDrivers(b *pgx.Batch, drivers []int) {
	slices.Sort(drivers)
	for _, id := range drivers {
		b.Queue(`UPDATE drivers SET active_deliveries = active_deliveries - 1 WHERE driver_id = $1`, id)
	}
}
