package order

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
)

// tracker is order-service's consumer: it follows the saga's outcome events and keeps
// orders.status on the highest-ranked status seen (ties: the later occurredAt), the rule the read
// model folds by (event.StatusOf), so the two end on the same status. The update is monotonic and
// idempotent, so redeliveries and any order of arrival give the same row: no inbox is needed.
type tracker struct {
	pool    *pgxpool.Pool
	updated prometheus.Counter
	reached *prometheus.CounterVec
	stage   *prometheus.HistogramVec
}

func newTracker(pool *pgxpool.Pool, reg prometheus.Registerer) *tracker {
	t := &tracker{pool: pool,
		updated: prometheus.NewCounter(prometheus.CounterOpts{Name: "order_status_updates_total",
			Help: "Order status changes applied from the saga's events (an event that changes nothing is not counted)."}),
		reached: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "order_status_reached_total",
			Help: "Orders that reached each status (counted once per order, when order-service applies it); the outcomes are INVENTORY_REJECTED, PAYMENT_FAILED, DELIVERED and CANCELLED."},
			[]string{"status"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "order_stage_seconds",
			Help:    "Time from an order's placement to the event that set each status (event times: placed→INVENTORY_RESERVED, →PAYMENT_AUTHORIZED, →DELIVERY_ASSIGNED, ...).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800}}, []string{"status"}),
	}
	reg.MustRegister(t.updated, t.reached, t.stage)
	return t
}

// trackedTopics are the topics whose events move an order's status.
func trackedTopics() []string {
	return []string{event.TopicInventory, event.TopicPayments, event.TopicDelivery}
}

type statusSeconds struct {
	status  string
	seconds float64
}

type statusChange struct {
	status string
	rank   int
	at     time.Time
}

// later reports whether c outranks o: a higher rank, or the same rank set by a later event.
func (c statusChange) later(o statusChange) bool {
	return c.rank > o.rank || (c.rank == o.rank && c.at.After(o.at))
}

// handle applies a partition's events in one statement: per order, the highest-ranked status of the
// batch, written only where it outranks the stored one. Events that set no status are acknowledged.
func (t *tracker) handle(ctx context.Context, es []event.Envelope) error {
	latest := map[string]statusChange{}
	for _, e := range es {
		status, rank, ok := event.StatusOf(e.EventType)
		if _, err := uuid.Parse(e.OrderID); err != nil || !ok || rank == 0 {
			continue // order-service's orderIds are UUIDs: any other id is not one of its orders
		}
		c := statusChange{status: status, rank: rank, at: e.OccurredAt.UTC()}
		if prev, seen := latest[e.OrderID]; !seen || c.later(prev) {
			latest[e.OrderID] = c
		}
	}
	if len(latest) == 0 {
		return nil
	}
	ids, statuses, ats := make([]string, 0, len(latest)), make([]string, 0, len(latest)), make([]time.Time, 0, len(latest))
	ranks := make([]int32, 0, len(latest))
	for id, c := range latest {
		ids, statuses, ats = append(ids, id), append(statuses, c.status), append(ats, c.at)
		ranks = append(ranks, int32(c.rank)) //nolint:gosec // ranks are 0..5
	}
	rows, err := t.pool.Query(ctx, `UPDATE orders o SET status = u.s, status_rank = u.r, status_at = u.at
		FROM unnest($1::text[]::uuid[], $2::text[], $3::int[], $4::timestamptz[]) AS u(id, s, r, at)
		WHERE o.order_id = u.id AND (o.status_rank, coalesce(o.status_at, o.created_at)) < (u.r, u.at)
		RETURNING u.s, extract(epoch FROM u.at - o.created_at)::float8`,
		ids, statuses, ranks, ats)
	if err != nil {
		return fmt.Errorf("update order statuses: %w", err)
	}
	var status string
	var since float64
	var changed []statusSeconds
	_, err = pgx.ForEachRow(rows, []any{&status, &since}, func() error {
		changed = append(changed, statusSeconds{status, since})
		return nil
	})
	if err != nil {
		return fmt.Errorf("update order statuses: %w", err)
	}
	// Counted after the statement succeeded (it commits on its own).
	for _, c := range changed {
		t.updated.Inc()
		t.reached.WithLabelValues(c.status).Inc()
		t.stage.WithLabelValues(c.status).Observe(max(c.seconds, 0))
	}
	return nil
}
