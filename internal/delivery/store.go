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

// assign handles payment.authorized: picks the least-loaded driver under capacity and writes the
// delivery, the inbox record, delivery.assigned and eta.updated in one transaction. It returns
// duplicate=true when the event or the order was already handled, and ErrNoDriver when every
// driver is full (nothing written; the runner retries).
func (s *store) assign(ctx context.Context, e event.Envelope) (d Delivery, duplicate bool, err error) {
	err = pg.InTx(ctx, s.pool, func(tx pgx.Tx) (err error) {
		d, duplicate, err = s.assignTx(ctx, tx, e, true)
		return err
	})
	return d, duplicate, err
}

// assignTx is assign inside the caller's transaction. With wait=false it never blocks on drivers
// locked by concurrent transactions (batches use that, and fall back to assign when it finds none).
func (s *store) assignTx(ctx context.Context, tx pgx.Tx, e event.Envelope, wait bool) (d Delivery, duplicate bool, err error) {
	modes := []string{"FOR UPDATE SKIP LOCKED"}
	if wait {
		modes = append(modes, "FOR UPDATE")
	}
	first, err := s.inbox.Begin(ctx, tx, e.EventID)
	if err != nil {
		return d, false, err
	}
	var exists bool
	if first {
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE order_id = $1)`, e.OrderID).Scan(&exists); err != nil {
			return d, false, fmt.Errorf("look up delivery: %w", err)
		}
	}
	if !first || exists {
		return d, true, nil
	}
	// Least loaded first, ties by driver_id; SKIP LOCKED lets concurrent assignments (also on
	// another replica) take different drivers instead of queueing on one row. The capacity
	// condition is part of the locked update, so no driver ever exceeds it.
	for _, lockMode := range modes {
		// When every driver with room is locked by concurrent assignments, SKIP LOCKED finds none;
		// the second pass waits for those locks instead of reporting a false "all full".
		err = tx.QueryRow(ctx, `UPDATE drivers SET active_deliveries = active_deliveries + 1
			WHERE driver_id = (SELECT driver_id FROM drivers WHERE active_deliveries < $1
				ORDER BY active_deliveries, driver_id LIMIT 1 `+lockMode+`)
			RETURNING driver_id, name`, s.rules.Capacity).Scan(&d.DriverID, &d.DriverName)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return d, false, ErrNoDriver
	}
	if err != nil {
		return d, false, fmt.Errorf("pick driver: %w", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	d.DeliveryID, d.OrderID, d.Zone, d.Status = newDeliveryID(), e.OrderID, zoneOf(e.OrderID), StatusAssigned
	d.AssignedAt, d.ETA = now, s.rules.InitialETA(now, e.OrderID)
	p := event.DeliveryPayload{OrderID: d.OrderID, DeliveryID: d.DeliveryID, DriverName: d.DriverName,
		Status: StatusAssigned, EstimatedDeliveryTime: d.ETA}
	assigned, err := s.factory.Caused(e, event.DeliveryAssigned, p)
	if err != nil {
		return d, false, err
	}
	eta, err := s.factory.Caused(e, event.ETAUpdated, p)
	if err != nil {
		return d, false, err
	}
	assigned.OccurredAt, eta.OccurredAt = now, now
	// The delivery and its events in one round trip: the driver row stays locked until the commit.
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO deliveries (delivery_id, order_id, driver_id, zone, status, eta, assigned_at, eta_checked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`, d.DeliveryID, d.OrderID, d.DriverID, d.Zone, d.Status, d.ETA, now)
	if err := outbox.Queue(b, assigned, eta); err != nil {
		return d, false, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return d, false, fmt.Errorf("insert delivery and its events: %w", err)
	}
	return d, false, nil
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
	err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		res = tickResult{}
		now := s.now().UTC().Truncate(time.Millisecond)
		rows, err := tx.Query(ctx, `SELECT d.delivery_id, d.order_id, d.driver_id, dr.name, d.zone, d.eta, d.assigned_at
			FROM deliveries d JOIN drivers dr USING (driver_id)
			WHERE d.status = 'ASSIGNED' AND d.eta_checked_at <= $1
			ORDER BY d.eta_checked_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED`, now.Add(-interval), batch)
		if err != nil {
			return fmt.Errorf("scan deliveries: %w", err)
		}
		ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
			var d Delivery
			return d, r.Scan(&d.DeliveryID, &d.OrderID, &d.DriverID, &d.DriverName, &d.Zone, &d.ETA, &d.AssignedAt)
		})
		if err != nil {
			return fmt.Errorf("scan deliveries: %w", err)
		}
		slot := now.UnixNano() / int64(interval)
		var events []event.Envelope
		b := &pgx.Batch{}
		for _, d := range ds {
			res.checked++
			p := event.DeliveryPayload{OrderID: d.OrderID, DeliveryID: d.DeliveryID, DriverName: d.DriverName,
				Status: StatusAssigned, EstimatedDeliveryTime: d.ETA.UTC()}
			switch {
			case !d.ETA.After(now):
				b.Queue(`UPDATE deliveries SET status = 'DELIVERED', delivered_at = $2, eta_checked_at = $2 WHERE delivery_id = $1`, d.DeliveryID, now)
				b.Queue(`UPDATE drivers SET active_deliveries = active_deliveries - 1 WHERE driver_id = $1`, d.DriverID)
				p.Status = StatusDelivered
				e, err := s.factory.New(event.DeliveryCompleted, d.OrderID, p)
				if err != nil {
					return err
				}
				events = append(events, e)
				res.delivered++
			default:
				next := s.rules.NextETA(now, d.ETA, d.AssignedAt, d.Zone, slot)
				if !s.rules.Significant(d.ETA, next) {
					b.Queue(`UPDATE deliveries SET eta_checked_at = $2 WHERE delivery_id = $1`, d.DeliveryID, now)
					continue
				}
				b.Queue(`UPDATE deliveries SET eta = $2, eta_checked_at = $3 WHERE delivery_id = $1`, d.DeliveryID, next, now)
				p.EstimatedDeliveryTime = next
				e, err := s.factory.New(event.ETAUpdated, d.OrderID, p)
				if err != nil {
					return err
				}
				events = append(events, e)
				res.updated++
			}
		}
		if b.Len() == 0 {
			return nil
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("update deliveries: %w", err)
		}
		return outbox.Add(ctx, tx, events...)
	})
	return res, err
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
