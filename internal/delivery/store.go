package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
	DeliveryID  string      `json:"deliveryId"`
	OrderID     string      `json:"orderId"`
	DriverID    int         `json:"driverId"`
	DriverName  string      `json:"driverName"`
	Zone        string      `json:"zone"`
	Status      string      `json:"status"`
	ETA         time.Time   `json:"estimatedDeliveryTime"`
	AssignedAt  time.Time   `json:"assignedAt"`
	DeliveredAt *time.Time  `json:"deliveredAt,omitempty"`
	trace       event.Trace // of the payment that started it; its timer's events continue it
}

// Driver is a drivers row.
type Driver struct {
	DriverID         int    `json:"driverId"`
	Name             string `json:"name"`
	Zone             string `json:"zone"`
	ActiveDeliveries int    `json:"activeDeliveries"`
}

// errDriversBusy: a batch found drivers with room that concurrent assignments held locked. The
// runner hands the batch over in halves; a single event waits for those locks instead.
var errDriversBusy = errors.New("drivers with room are locked by concurrent assignments")

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
	waiting   bool // every driver is at capacity (or others wait already): queued
	cancelled bool // with duplicate: the order was cancelled before its payment came (nothing to assign)
}

// assignAll handles the payment.authorized events es in one transaction of two round trips: the
// inbox records, the orders' existing deliveries or queue places, the free capacity and one driver
// pick per new order go out with the BEGIN; the deliveries (or queue places) and their events with
// the COMMIT. A pick takes the least-loaded driver with room, ties by driver_id, skipping drivers
// locked by concurrent assignments (also on another replica) instead of queueing on one row; the
// capacity condition is part of the locked update, so no driver ever exceeds it.
//
// An order that finds no driver waits in the queue (waiting_orders, delivery.waiting) when the
// capacity is used up, or when orders wait already: first come, first served (assignWaiting takes
// them in order). When there was room that others held locked, a single event takes one more round
// trip that waits for those locks (it holds no other driver, so it cannot deadlock); a batch
// fails with errDriversBusy.
func (s *store) assignAll(ctx context.Context, es []event.Envelope) ([]assigned, error) {
	var res []assigned
	err := pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		var err error
		var giveBack []int
		res, giveBack, err = s.pick(ctx, tx, es, len(es) == 1)
		if err != nil {
			return err
		}
		queueFreeDrivers(&tx.Writes, giveBack)
		now := s.now().UTC().Truncate(time.Millisecond)
		events, err := s.queueDeliveries(&tx.Writes, es, res, now)
		if err != nil {
			return err
		}
		waits, err := s.queueWaits(&tx.Writes, es, res, now)
		if err != nil {
			return err
		}
		// The deliveries and their events with the COMMIT: the driver rows stay locked until then.
		return outbox.Caused(tx, append(events, waits...)...)
	})
	return res, err
}

// pickDriver takes a driver with room for order $2 unless it has a delivery or was cancelled; %s is the row lock
// (SKIP LOCKED or waiting), %s an extra condition.
const pickDriver = `UPDATE drivers SET active_deliveries = active_deliveries + 1
	WHERE driver_id = (SELECT driver_id FROM drivers WHERE active_deliveries < $1
		ORDER BY active_deliveries, driver_id LIMIT 1 %s)
	AND NOT EXISTS (SELECT 1 FROM deliveries WHERE order_id = $2)
	AND NOT EXISTS (SELECT 1 FROM cancellations WHERE order_id = $2 AND refusal IS NULL) %s
	RETURNING driver_id, name`

// behindTheQueue keeps a new order from overtaking those that wait.
const behindTheQueue = `AND NOT EXISTS (SELECT 1 FROM waiting_orders)`

// queuePick queues a pick for orderID into b, filling r's driver and *picked.
func (s *store) queuePick(b *pgx.Batch, r *assigned, picked *bool, orderID, lock, cond string) {
	b.Queue(fmt.Sprintf(pickDriver, lock, cond), s.rules.Capacity, orderID).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&r.delivery.DriverID, &r.delivery.DriverName)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // the order has a delivery, others wait, or every driver with room is full or locked
		}
		*picked = err == nil
		return err
	})
}

// pick records es in the inbox and takes a driver for every order that has neither a delivery nor a
// place in the queue; it fills res[i].delivery's driver for the events to assign, marks the others
// duplicate or waiting. A driver taken for an event found to be a duplicate (its inbox record
// exists but its order's delivery does not: only possible if that row was removed by hand) is
// returned in giveBack.
func (s *store) pick(ctx context.Context, tx *pg.BatchTx, es []event.Envelope, wait bool) (res []assigned, giveBack []int, err error) {
	res = make([]assigned, len(es))
	fresh, exists, cancelled := map[string]bool{}, map[string]bool{}, map[string]bool{}
	ids, orders := make([]string, len(es)), make([]string, 0, len(es))
	first := map[string]int{} // order → index of its first event in es
	for i, e := range es {
		ids[i] = e.EventID
		if _, ok := first[e.OrderID]; !ok {
			first[e.OrderID] = i
			orders = append(orders, e.OrderID)
		}
	}
	var (
		free   int  // unused capacity before this transaction's picks
		queued bool // orders wait already: new ones go behind them
	)
	b := &pgx.Batch{}
	lockOrders(b, orders)
	b.Queue(`SELECT coalesce(sum($1 - active_deliveries), 0), EXISTS (SELECT 1 FROM waiting_orders) FROM drivers WHERE active_deliveries < $1`,
		s.rules.Capacity).QueryRow(func(row pgx.Row) error { return row.Scan(&free, &queued) })
	s.inbox.Record(b, ids, func(id string) { fresh[id] = true })
	b.Queue(`SELECT order_id, false FROM deliveries WHERE order_id = ANY($1) UNION ALL SELECT order_id, false FROM waiting_orders WHERE order_id = ANY($1)
		UNION ALL SELECT order_id, true FROM cancellations WHERE order_id = ANY($1) AND refusal IS NULL`,
		orders).Query(func(rows pgx.Rows) error {
		var o string
		var c bool
		_, err := pgx.ForEachRow(rows, []any{&o, &c}, func() error { exists[o], cancelled[o] = true, cancelled[o] || c; return nil })
		return err
	})
	picked := make([]bool, len(es))
	for _, o := range orders {
		i := first[o]
		s.queuePick(b, &res[i], &picked[i], o, "FOR UPDATE SKIP LOCKED", behindTheQueue)
	}
	if err := tx.Read(ctx, b); err != nil {
		return nil, nil, fmt.Errorf("pick drivers: %w", err)
	}
	var unpicked []int
	for i, e := range es {
		switch {
		case first[e.OrderID] != i, !fresh[e.EventID], exists[e.OrderID]:
			res[i].duplicate = true
			res[i].cancelled = cancelled[e.OrderID] && fresh[e.EventID] && first[e.OrderID] == i
		case !picked[i]:
			unpicked = append(unpicked, i)
		}
	}
	// Room that this transaction did not get is held by concurrent assignments.
	busy := len(unpicked) > 0 && !queued && countTrue(picked) < free
	if busy && !wait {
		return nil, nil, errDriversBusy
	}
	if busy {
		b := &pgx.Batch{}
		for _, i := range unpicked {
			s.queuePick(b, &res[i], &picked[i], es[i].OrderID, "FOR UPDATE", behindTheQueue)
		}
		if err := tx.Read(ctx, b); err != nil {
			return nil, nil, fmt.Errorf("pick drivers: %w", err)
		}
	}
	for i := range es {
		switch {
		case res[i].duplicate && picked[i]:
			giveBack = append(giveBack, res[i].delivery.DriverID)
			res[i].delivery = Delivery{}
		case res[i].duplicate:
			res[i].delivery = Delivery{}
		case !picked[i]:
			res[i].waiting = true
		}
	}
	return res, giveBack, nil
}

// queueDeliveries queues the deliveries of the events pick assigned a driver and returns their
// events (delivery.assigned, eta.updated).
func (s *store) queueDeliveries(b *pgx.Batch, es []event.Envelope, res []assigned, now time.Time) ([]event.Envelope, error) {
	var events []event.Envelope
	for i, e := range es {
		if res[i].duplicate || res[i].waiting {
			continue
		}
		d := &res[i].delivery
		d.DeliveryID, d.OrderID, d.Zone, d.Status = newDeliveryID(), e.OrderID, zoneOf(e.OrderID), StatusAssigned
		d.AssignedAt, d.ETA = now, s.rules.InitialETA(now, e.OrderID)
		p := event.DeliveryPayload{OrderID: d.OrderID, DeliveryID: d.DeliveryID, DriverName: d.DriverName,
			Status: StatusAssigned, EstimatedDeliveryTime: d.ETA}
		as, err := s.factory.Caused(e, event.DeliveryAssigned, p)
		if err != nil {
			return nil, err
		}
		eta, err := s.factory.Caused(e, event.ETAUpdated, p)
		if err != nil {
			return nil, err
		}
		as.OccurredAt, eta.OccurredAt = now, now
		events = append(events, as, eta)
		b.Queue(`INSERT INTO deliveries (delivery_id, order_id, driver_id, zone, status, eta, assigned_at, eta_checked_at, traceparent, tracestate)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULLIF($8, ''), NULLIF($9, ''))`, d.DeliveryID, d.OrderID, d.DriverID, d.Zone, d.Status, d.ETA, now,
			e.Trace.Parent, e.Trace.State)
	}
	return events, nil
}

// queueWaits queues the queue places of the events pick left waiting and returns their
// delivery.waiting events.
func (s *store) queueWaits(b *pgx.Batch, es []event.Envelope, res []assigned, now time.Time) ([]event.Envelope, error) {
	var events []event.Envelope
	for i, e := range es {
		if !res[i].waiting {
			continue
		}
		w, err := s.factory.Caused(e, event.DeliveryWaiting, event.DeliveryWaitingPayload{OrderID: e.OrderID, WaitingSince: now})
		if err != nil {
			return nil, err
		}
		w.OccurredAt = now
		events = append(events, w)
		b.Queue(`INSERT INTO waiting_orders (order_id, cause_event_id, correlation_id, waiting_since, traceparent, tracestate)
			VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''))`, e.OrderID, e.EventID, e.CorrelationID, now, e.Trace.Parent, e.Trace.State)
	}
	return events, nil
}

// assignWaiting assigns up to limit waiting orders, oldest first, to drivers with room, in one
// transaction of two round trips; it returns how many it assigned. Orders another replica is
// assigning are skipped (SKIP LOCKED). Written on a timer, the events take the table door.
func (s *store) assignWaiting(ctx context.Context, limit int) (int, error) {
	n := 0
	err := pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		n = 0
		var causes []event.Envelope
		b := &pgx.Batch{}
		// An order assigned meanwhile by other means (an older replica during a rolling upgrade, which
		// knows no queue) has left the queue; without this it would hold up every order behind it.
		b.Queue(`DELETE FROM waiting_orders w USING deliveries d WHERE w.order_id = d.order_id`)
		b.Queue(`SELECT order_id, cause_event_id::text, correlation_id, coalesce(traceparent, ''), coalesce(tracestate, '') FROM waiting_orders
			ORDER BY waiting_since, order_id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit).Query(func(rows pgx.Rows) error {
			var e event.Envelope
			_, err := pgx.ForEachRow(rows, []any{&e.OrderID, &e.EventID, &e.CorrelationID, &e.Trace.Parent, &e.Trace.State}, func() error {
				causes = append(causes, e)
				return nil
			})
			return err
		})
		if err := tx.Read(ctx, b); err != nil {
			return fmt.Errorf("read the driver queue: %w", err)
		}
		if len(causes) == 0 {
			return nil
		}
		res, picked := make([]assigned, len(causes)), make([]bool, len(causes))
		b = &pgx.Batch{}
		for i, e := range causes {
			s.queuePick(b, &res[i], &picked[i], e.OrderID, "FOR UPDATE SKIP LOCKED", "")
		}
		if err := tx.Read(ctx, b); err != nil {
			return fmt.Errorf("pick drivers for the queue: %w", err)
		}
		var done []string
		for i, e := range causes {
			res[i].waiting = !picked[i]
			if picked[i] {
				done = append(done, e.OrderID)
			}
		}
		if len(done) == 0 {
			return nil
		}
		tx.Writes.Queue(`DELETE FROM waiting_orders WHERE order_id = ANY($1)`, done)
		events, err := s.queueDeliveries(&tx.Writes, causes, res, s.now().UTC().Truncate(time.Millisecond))
		if err != nil {
			return err
		}
		n = len(done)
		return outbox.Timed(tx, events...)
	})
	return n, err
}

func (s *store) waitingCount(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM waiting_orders`).Scan(&n)
	return n, err
}

func countTrue(bs []bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
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
		b.Queue(`SELECT d.delivery_id, d.order_id, d.driver_id, dr.name, d.zone, d.eta, d.assigned_at, coalesce(d.traceparent, ''), coalesce(d.tracestate, '')
			FROM deliveries d JOIN drivers dr USING (driver_id)
			WHERE d.status = 'ASSIGNED' AND d.eta_checked_at <= $1
			ORDER BY d.eta_checked_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED`, now.Add(-interval), batch).Query(func(rows pgx.Rows) (err error) {
			ds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
				var d Delivery
				return d, r.Scan(&d.DeliveryID, &d.OrderID, &d.DriverID, &d.DriverName, &d.Zone, &d.ETA, &d.AssignedAt, &d.trace.Parent, &d.trace.State)
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
	var freed []int
	for _, d := range ds {
		res.checked++
		p := event.DeliveryPayload{OrderID: d.OrderID, DeliveryID: d.DeliveryID, DriverName: d.DriverName,
			Status: StatusAssigned, EstimatedDeliveryTime: d.ETA.UTC()}
		typ := event.ETAUpdated
		switch next := s.rules.NextETA(now, d.ETA, d.AssignedAt, d.Zone, slot); {
		case !d.ETA.After(now):
			b.Queue(`UPDATE deliveries SET status = 'DELIVERED', delivered_at = $2, eta_checked_at = $2 WHERE delivery_id = $1`, d.DeliveryID, now)
			freed = append(freed, d.DriverID)
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
		e.Trace = d.trace
		events = append(events, e)
	}
	queueFreeDrivers(b, freed)
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
