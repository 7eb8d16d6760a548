package order

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// tracker is order-service's consumer: it follows the saga's outcome events and keeps
// orders.status on the highest-ranked status seen (ties: the later occurredAt), the rule the read
// model folds by (event.StatusOf), so the two end on the same status. The update is monotonic and
// idempotent, so redeliveries and any order of arrival give the same row: no inbox is needed.
//
// The partitions' workers call handle concurrently; their batches are combined into one statement
// (group commit): a call made while no statement runs starts at once, calls made meanwhile go
// together in the next. Merging changes nothing but the statement count (the update is monotonic),
// and order-service's status is not on the saga's path, so a combined call's wait delays no order.
type tracker struct {
	pool    *pgxpool.Pool
	updated prometheus.Counter
	reached *prometheus.CounterVec
	stage   *prometheus.HistogramVec

	mu      sync.Mutex
	queued  []*trackCall
	running bool
	// statements counts the UPDATEs sent (tests read it).
	statements atomic.Int64
}

// trackCall is one handle call's statuses waiting for a statement.
type trackCall struct {
	latest map[string]statusChange
	done   chan error    // the statement's outcome, when another call sent it
	lead   chan struct{} // closed when this call is to send the next statement
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

// trackerFetchWait is how long the tracker's fetches may wait to fill (see run).
const trackerFetchWait = 100 * time.Millisecond

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

// handle applies a partition's events: per order, the highest-ranked status of the batch, written
// only where it outranks the stored one. Events that set no status are acknowledged.
func (t *tracker) handle(ctx context.Context, es []event.Envelope) error {
	latest := map[string]statusChange{}
	for _, e := range es {
		status, rank, ok := event.StatusOf(e.EventType)
		if _, err := uuid.Parse(e.OrderID); err != nil || !ok || rank == 0 {
			continue // order-service's orderIds are UUIDs: any other id is not one of its orders
		}
		merge(latest, e.OrderID, statusChange{status: status, rank: rank, at: e.OccurredAt.UTC()})
	}
	if len(latest) == 0 {
		return nil
	}
	return t.combined(ctx, latest)
}

// combined writes latest together with the calls queued meanwhile (see tracker): the first call
// sends the statement for all queued, the others wait for its outcome, and when calls queued while
// it ran, the oldest of them sends the next.
func (t *tracker) combined(ctx context.Context, latest map[string]statusChange) error {
	c := &trackCall{latest: latest, done: make(chan error, 1), lead: make(chan struct{})}
	t.mu.Lock()
	t.queued = append(t.queued, c)
	leader := !t.running
	t.running = true
	t.mu.Unlock()
	if !leader {
		// No context here: a call promoted to lead must run, or the calls behind it would wait
		// forever; the statement it sends is bounded by its own context.
		select {
		case err := <-c.done:
			return err
		case <-c.lead:
		}
	}
	t.mu.Lock()
	calls := t.queued
	t.queued = nil
	t.mu.Unlock()
	all := map[string]statusChange{}
	for _, q := range calls {
		for id, sc := range q.latest {
			merge(all, id, sc)
		}
	}
	err := t.update(ctx, all)
	if err != nil && len(calls) > 1 && !pg.IsUnavailable(err) {
		// Refused, not unavailable: each call alone, so one cannot fail its neighbours.
		for _, q := range calls {
			if e := t.update(ctx, q.latest); q == c {
				err = e
			} else {
				q.done <- e
			}
		}
		calls = nil
	}
	for _, q := range calls {
		if q != c {
			q.done <- err
		}
	}
	t.mu.Lock()
	if len(t.queued) > 0 {
		close(t.queued[0].lead)
	} else {
		t.running = false
	}
	t.mu.Unlock()
	return err
}

// merge keeps in latest the later of c and what latest holds for id.
func merge(latest map[string]statusChange, id string, c statusChange) {
	if prev, seen := latest[id]; !seen || c.later(prev) {
		latest[id] = c
	}
}

// update writes latest in one statement.
func (t *tracker) update(ctx context.Context, latest map[string]statusChange) error {
	t.statements.Add(1)
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
