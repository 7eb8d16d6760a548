package payment

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/redislock"
)

// Metrics carry the names fixed by the design (payment_*), labelled application=payment-service by
// the service registry.
type metrics struct {
	processed   prometheus.Counter
	failed      prometheus.Counter
	duplicate   prometheus.Counter
	redisHit    prometheus.Counter
	dbHit       prometheus.Counter
	lockTimeout prometheus.Counter
	duration    prometheus.Histogram
	ignored     *prometheus.CounterVec
	degraded    *prometheus.CounterVec
	cancels     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		processed:   c("payment_processed_total", "Payments recorded (authorized or declined), counted after commit."),
		failed:      c("payment_failed_total", "Payments declined by the gateway, counted after commit."),
		duplicate:   c("payment_duplicate_total", "Events recognised as duplicates by any layer; nothing was charged."),
		redisHit:    c("payment_dedup_redis_hit_total", "Duplicates caught by the Redis fast path (layer 2)."),
		dbHit:       c("payment_dedup_db_hit_total", "Duplicates caught by the database unique constraints (layer 3)."),
		lockTimeout: c("payment_lock_timeout_total", "Lock waits that timed out; the event is retried."),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "payment_processing_duration_seconds",
			Help:    "Time from lock acquisition to lock release.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "payment_events_ignored_total",
			Help: "Events acknowledged without effect (inventory.rejected, inventory.released, ...)."}, []string{"type"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "payment_redis_degraded_total",
			Help: "Redis operations that failed; processing continued on the database layer."}, []string{"op"}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "payment_cancellations_total",
			Help: "Accepted cancellations (inventory.released with reason ORDER_CANCELLED) by outcome: refunded, before_charge (no charge will be made), nothing_to_refund; charge_skipped counts charges that came after the cancellation or with it in one batch. Counted after commit."},
			[]string{"outcome"}),
	}
	reg.MustRegister(m.processed, m.failed, m.duplicate, m.redisHit, m.dbHit, m.lockTimeout, m.duration, m.ignored, m.degraded, m.cancels)
	return m
}

// Payment statuses beyond the wire's AUTHORIZED and FAILED: REFUNDED (authorized, then refunded
// after the order's cancellation) and CANCELLED (the order was cancelled before any charge).
const (
	StatusRefunded  = "REFUNDED"
	StatusCancelled = "CANCELLED"
)

// Payment is a payments row.
type Payment struct {
	PaymentID      int64       `json:"paymentId"`
	OrderID        string      `json:"orderId"`
	IdempotencyKey string      `json:"idempotencyKey"`
	CustomerID     string      `json:"customerId"`
	Amount         event.Money `json:"amount"`
	Currency       string      `json:"currency"`
	Status         string      `json:"status"`
	FailureReason  *string     `json:"failureReason"`
	CreatedAt      time.Time   `json:"createdAt"`
	RefundedAt     *time.Time  `json:"refundedAt,omitempty"`
}

// processor applies the three layers around one transaction (DESIGN.md §4, docs/payment.md).
type processor struct {
	pool    *pgxpool.Pool
	locker  *redislock.Locker
	dedup   *redislock.Dedup
	gateway Gateway
	factory event.Factory
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time
}

// errLockTimeout: another instance held the order's lock for the whole wait. It is returned marked
// kafka.Unavailable, like an outage: contention is no fault of the event, so it is retried without
// an attempt limit and never dead-lettered.
var errLockTimeout = errors.New("payment lock wait timed out")

// countRedisHit counts a duplicate caught by the Redis fast path (layer 2).
func (p *processor) countRedisHit() {
	p.metrics.redisHit.Inc()
	p.metrics.duplicate.Inc()
}

// countRecorded moves the counters for a committed charge: a payment, or a duplicate the database
// constraints caught (layer 3).
func (p *processor) countRecorded(c *charge) {
	switch {
	case c.outcome != "":
		p.metrics.cancels.WithLabelValues(c.outcome).Inc()
	case c.dup:
		p.metrics.dbHit.Inc()
		p.metrics.duplicate.Inc()
	case c.pay.Status == event.PaymentStatusFailed:
		p.metrics.processed.Inc()
		p.metrics.failed.Inc()
	default:
		p.metrics.processed.Inc()
	}
}

func (p *processor) degrade(op string, err error, log *slog.Logger) {
	p.metrics.degraded.WithLabelValues(op).Inc()
	log.Warn("redis unavailable, continuing on the database layer", "op", op, "err", err)
}

// insertPayment writes a payment unless a unique constraint (idempotency_key, order_id) already
// holds one; it returns the new payment_id, or no row for a duplicate.
const insertPayment = `INSERT INTO payments (order_id, idempotency_key, customer_id, amount, currency, status, failure_reason, created_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING payment_id`

func paymentEventType(pay Payment) event.Type {
	if pay.Status == event.PaymentStatusFailed {
		return event.PaymentFailed
	}
	return event.PaymentAuthorized
}

func paymentPayload(pay Payment) event.PaymentPayload {
	return event.PaymentPayload{PaymentID: pay.PaymentID, OrderID: pay.OrderID, Amount: pay.Amount, Currency: pay.Currency,
		Status: pay.Status, FailureReason: pay.FailureReason}
}

// ErrNotFound: no payment for the order.
var ErrNotFound = errors.New("payment not found")

func (p *processor) get(ctx context.Context, orderID string) (Payment, error) {
	var pay Payment
	err := p.pool.QueryRow(ctx, `SELECT payment_id, order_id, idempotency_key, coalesce(customer_id, ''), coalesce(amount, 0),
		coalesce(currency, ''), status, failure_reason, created_at, refunded_at
		FROM payments WHERE order_id = $1`, orderID).Scan(&pay.PaymentID, &pay.OrderID, &pay.IdempotencyKey, &pay.CustomerID,
		&pay.Amount, &pay.Currency, &pay.Status, &pay.FailureReason, &pay.CreatedAt, &pay.RefundedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return pay, ErrNotFound
	}
	pay.CreatedAt = pay.CreatedAt.UTC()
	if pay.RefundedAt != nil {
		t := pay.RefundedAt.UTC()
		pay.RefundedAt = &t
	}
	return pay, err
}
