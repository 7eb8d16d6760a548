package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/inbox"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// Delivery statuses.
const (
	StatusAssigned  = event.DeliveryStatusAssigned
	StatusDelivered = event.DeliveryStatusDelivered
)

// Delivery is a deliveries row joined with its driver, as the operator API shows it.
type Delivery struct {
	DeliveryID  string     `json:"deliveryId"`
	OrderID     string     `json:"orderId"`
	DriverID    int        `json:"driverId"`
	DriverName  string     `json:"driverName"`
	Zone        string     `json:"zone"`
	Status      string     `json:"status"`
	ETA         time.Time  `json:"estimatedDeliveryTime"`
	AssignedAt  time.Time  `json:"assignedAt"`
	DeliveredAt *time.Time `json:"deliveredAt,omitempty"`
}

// Driver is a drivers row.
type Driver struct {
	DriverID         int    `json:"driverId"`
	Name             string `json:"name"`
	Zone             string `json:"zone"`
	ActiveDeliveries int    `json:"activeDeliveries"`
}

// ErrNoDriver: every driver is at capacity. A business wait, not a failure: retried with backoff.
var ErrNoDriver = errors.New("every driver is at capacity")

// ErrNotFound: no delivery for the order.
var ErrNotFound = errors.New("delivery not found")

type store struct {
	pool    *pgxpool.Pool
	inbox   *inbox.Inbox
	factory event.Factory
	rules   Rules
	now     func() time.Time
}

func newDeliveryID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "DEL-" + hex.EncodeToString(b[:])
}

// seedDrivers inserts drivers 1..n that do not exist yet.
func (s *store) seedDrivers(ctx context.Context, n int) error {
	ids, names, zs := make([]int32, n), make([]string, n), make([]string, n)
	for i := 1; i <= n; i++ {
		ids[i-1] = int32(i)
		names[i-1], zs[i-1] = driver(i)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO drivers (driver_id, name, zone)
		SELECT * FROM unnest($1::int[], $2::text[], $3::text[]) ON CONFLICT (driver_id) DO NOTHING`, ids, names, zs)
	if err != nil {
		return fmt.Errorf("seed drivers: %w", err)
	}
	return nil
}

// assigned is the outcome of one payment.authorized.
type assigned struct {
	delivery  Delivery
	duplicate bool // the event or its order was handled before (or earlier in the batch)
}

// assignAll handles the payment.authorized events es in one transaction of two round trips: the
// inbox records, the orders' existing deliveries and one driver pick per new order go out with the
// BEGIN; the deliveries and their events with the COMMIT. The picks take the least-loaded driver
// with room, ties by driver_id, skipping drivers locked by concurrent assignments (also on another
// replica) instead of queueing on one row; the capacity condition is part of the locked update, so
// no driver ever exceeds it. When every driver with room is locked, a single event takes one more
// round trip that waits for those locks instead of reporting a false "all full" (it holds no other
// driver, so it cannot deadlock); a batch reports ErrNoDriver.
func (s *store) assignAll(ctx context.Context, es []event.Envelope) ([]assigned, error) {
	var res []assigned
	err := pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		var err error
		var giveBack []int
		res, giveBack, err = s.pick(ctx, tx, es, len(es) == 1)
		if err != nil {
			return err
		}
		return s.writeDeliveries(tx, es, res, giveBack)
	})
	return res, err
}

const pickDriver = `UPDATE drivers SET active_deliveries = active_deliveries + 1
	WHERE driver_id = (SELECT driver_id FROM drivers WHERE active_deliveries < $1
		ORDER BY active_deliveries, driver_id LIMIT 1 %s)
	AND NOT EXISTS (SELECT 1 FROM deliveries WHERE order_id = $2)
	RETURNING driver_id, name`

// pick records es in the inbox and takes a driver for every order that has no delivery yet; it
// fills res[i].delivery's driver for the events to assign and marks the others duplicate. A driver
// taken for an event found to be a duplicate (its inbox record exists but its order's delivery does
// not: only possible if that row was removed by hand) is returned in giveBack.
func (s *store) pick(ctx context.Context, tx *pg.BatchTx, es []event.Envelope, wait bool) (res []assigned, giveBack []int, err error) {
	res = make([]assigned, len(es))
	fresh, exists := map[string]bool{}, map[string]bool{}
	ids, orders := make([]string, len(es)), make([]string, 0, len(es))
	first := map[string]int{} // order → index of its first event in es
	for i, e := range es {
		ids[i] = e.EventID
		if _, ok := first[e.OrderID]; !ok {
			first[e.OrderID] = i
			orders = append(orders, e.OrderID)
		}
	}
	b := &pgx.Batch{}
	s.inbox.Record(b, ids, func(id string) { fresh[id] = true })
	b.Queue(`SELECT order_id FROM deliveries WHERE order_id = ANY($1)`, orders).Query(func(rows pgx.Rows) error {
		var o string
		_, err := pgx.ForEachRow(rows, []any{&o}, func() error { exists[o] = true; return nil })
		return err
	})
	picked := make([]bool, len(es))
	queuePick := func(b *pgx.Batch, i int, lockMode string) {
		b.Queue(fmt.Sprintf(pickDriver, lockMode), s.rules.Capacity, es[i].OrderID).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&res[i].delivery.DriverID, &res[i].delivery.DriverName)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // the order has a delivery, or every driver with room is full or locked
			}
			picked[i] = err == nil
			return err
		})
	}
	for _, o := range orders {
		queuePick(b, first[o], "FOR UPDATE SKIP LOCKED")
	}
	if err := tx.Read(ctx, b); err != nil {
		return nil, nil, fmt.Errorf("pick drivers: %w", err)
	}
	var waiting []int
	for i, e := range es {
		switch {
		case first[e.OrderID] != i, !fresh[e.EventID], exists[e.OrderID]:
			res[i].duplicate = true
		case !picked[i]:
			waiting = append(waiting, i)
		}
	}
	if len(waiting) > 0 && wait {
		b := &pgx.Batch{}
		for _, i := range waiting {
			queuePick(b, i, "FOR UPDATE")
		}
		if err := tx.Read(ctx, b); err != nil {
			return nil, nil, fmt.Errorf("pick drivers: %w", err)
		}
		waiting = slices.DeleteFunc(waiting, func(i int) bool { return picked[i] })
	}
	if len(waiting) > 0 {
		return nil, nil, ErrNoDriver
	}
	for i := range es {
		if res[i].duplicate {
			if picked[i] {
				giveBack = append(giveBack, res[i].delivery.DriverID)
			}
			res[i].delivery = Delivery{}
		}
	}
	return res, giveBack, nil
}

// writeDeliveries queues the writes for the events pick assigned.
func (s *store) writeDeliveries(tx *pg.BatchTx, es []event.Envelope, res []assigned, giveBack []int) error {
	b := &tx.Writes
	for _, id := range giveBack {
		b.Queue(`UPDATE drivers SET active_deliveries = active_deliveries - 1 WHERE driver_id = $1`, id)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	var events []event.Envelope
	for i, e := range es {
		if res[i].duplicate {
			continue
		}
		d := &res[i].delivery
		d.DeliveryID, d.OrderID, d.Zone, d.Status = newDeliveryID(), e.OrderID, zoneOf(e.OrderID), StatusAssigned
		d.AssignedAt, d.ETA = now, s.rules.InitialETA(now, e.OrderID)
		p := event.DeliveryPayload{OrderID: d.OrderID, DeliveryID: d.DeliveryID, DriverName: d.DriverName,
			Status: StatusAssigned, EstimatedDeliveryTime: d.ETA}
		as, err := s.factory.Caused(e, event.DeliveryAssigned, p)
		if err != nil {
			return err
		}
		eta, err := s.factory.Caused(e, event.ETAUpdated, p)
		if err != nil {
			return err
		}
		as.OccurredAt, eta.OccurredAt = now, now
		events = append(events, as, eta)
		b.Queue(`INSERT INTO deliveries (delivery_id, order_id, driver_id, zone, status, eta, assigned_at, eta_checked_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`, d.DeliveryID, d.OrderID, d.DriverID, d.Zone, d.Status, d.ETA, now)
	}
	// The deliveries and their events with the COMMIT: the driver rows stay locked until then.
	return outbox.Caused(tx, events...)
}

// tickResult summarises one scheduler pass.
type tickResult struct {
	checked, updated, delivered int
}

// tick re-checks active deliveries that are due (last checked at least interval ago): a delivery
// whose ETA has passed is DELIVERED (driver freed, delivery.completed published); otherwise its ETA
// is recalculated and, if it moved by at least the threshold, updated with an eta.updated event.
// FOR UPDATE SKIP LOCKED plus the due condition make concurrent schedulers (replicas) split the
// work: a delivery is handled by one of them per interval.
func (s *store) tick(ctx context.Context, interval time.Duration, batch int) (tickResult, error) {
	var res tickResult
	err := pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		res = tickResult{}
		now := s.now().UTC().Truncate(time.Millisecond)
		var ds []Delivery
		b := &pgx.Batch{}
		b.Queue(`SELECT d.delivery_id, d.order_id, d.driver_id, dr.name, d.zone, d.eta, d.assigned_at
			FROM deliveries d JOIN drivers dr USING (driver_id)
			WHERE d.status = 'ASSIGNED' AND d.eta_checked_at <= $1
			ORDER BY d.eta_checked_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED`, now.Add(-interval), batch).Query(func(rows pgx.Rows) (err error) {
			ds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
				var d Delivery
				return d, r.Scan(&d.DeliveryID, &d.OrderID, &d.DriverID, &d.DriverName, &d.Zone, &d.ETA, &d.AssignedAt)
			})
			return err
		})
		if err := tx.Read(ctx, b); err != nil {
			return fmt.Errorf("scan deliveries: %w", err)
		}
		events, err := s.recheck(&tx.Writes, ds, now, interval, &res)
		if err != nil {
			return err
		}
		// Written on a timer, not caused by the order's previous event.
		return outbox.Timed(tx, events...)
	})
	return res, err
}

// recheck queues the writes of one scheduler pass over ds and returns the events to publish.
func (s *store) recheck(b *pgx.Batch, ds []Delivery, now time.Time, interval time.Duration, res *tickResult) ([]event.Envelope, error) {
	slot := now.UnixNano() / int64(interval)
	var events []event.Envelope
	for _, d := range ds {
		res.checked++
		p := event.DeliveryPayload{OrderID: d.OrderID, DeliveryID: d.DeliveryID, DriverName: d.DriverName,
			Status: StatusAssigned, EstimatedDeliveryTime: d.ETA.UTC()}
		typ := event.ETAUpdated
		switch next := s.rules.NextETA(now, d.ETA, d.AssignedAt, d.Zone, slot); {
		case !d.ETA.After(now):
			b.Queue(`UPDATE deliveries SET status = 'DELIVERED', delivered_at = $2, eta_checked_at = $2 WHERE delivery_id = $1`, d.DeliveryID, now)
			b.Queue(`UPDATE drivers SET active_deliveries = active_deliveries - 1 WHERE driver_id = $1`, d.DriverID)
			typ, p.Status = event.DeliveryCompleted, StatusDelivered
			res.delivered++
		case !s.rules.Significant(d.ETA, next):
			b.Queue(`UPDATE deliveries SET eta_checked_at = $2 WHERE delivery_id = $1`, d.DeliveryID, now)
			continue
		default:
			b.Queue(`UPDATE deliveries SET eta = $2, eta_checked_at = $3 WHERE delivery_id = $1`, d.DeliveryID, next, now)
			p.EstimatedDeliveryTime = next
			res.updated++
		}
		e, err := s.factory.New(typ, d.OrderID, p)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, nil
}

func (s *store) get(ctx context.Context, orderID string) (Delivery, error) {
	var d Delivery
	err := s.pool.QueryRow(ctx, `SELECT d.delivery_id, d.order_id, d.driver_id, dr.name, d.zone, d.status, d.eta, d.assigned_at, d.delivered_at
		FROM deliveries d JOIN drivers dr USING (driver_id) WHERE d.order_id = $1`, orderID).
		Scan(&d.DeliveryID, &d.OrderID, &d.DriverID, &d.DriverName, &d.Zone, &d.Status, &d.ETA, &d.AssignedAt, &d.DeliveredAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, ErrNotFound
	}
	d.ETA, d.AssignedAt = d.ETA.UTC(), d.AssignedAt.UTC()
	return d, err
}

func (s *store) drivers(ctx context.Context) ([]Driver, error) {
	rows, err := s.pool.Query(ctx, `SELECT driver_id, name, zone, active_deliveries FROM drivers ORDER BY driver_id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Driver])
}

func (s *store) activeCount(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE status = 'ASSIGNED'`).Scan(&n)
	return n, err
}
