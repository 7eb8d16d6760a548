package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
)

// RelayConfig configures a Relay. Zero values take the documented defaults.
type RelayConfig struct {
	// BatchSize is the most rows published per round (default 500).
	BatchSize int
	// PollInterval is the fallback wake-up when no NOTIFY arrives (default 1s).
	PollInterval time.Duration
	// Retention keeps sent rows this long before purging them, so they can be republished (default 24h).
	Retention time.Duration
	// LeaderRetry is how often a standby relay tries to become the active one (default 2s).
	LeaderRetry time.Duration
	// PublishTimeout bounds one batch's wait for Kafka; unacknowledged rows stay unsent (default 30s).
	PublishTimeout time.Duration
	// Coalesce is how long the relay waits after a wake-up before reading, so rows committed at
	// nearly the same moment go out in one batch (default 2ms; negative disables).
	Coalesce time.Duration
	// LockKey names the advisory lock electing the active relay (default "orderflow-outbox-relay").
	LockKey string
	// Now is the clock stamped into producedAt (default time.Now).
	Now func() time.Time
}

// Relay publishes committed outbox rows. Run it as a lifecycle component; any number of replicas
// may run, only one per database publishes at a time.
type Relay struct {
	cfg      RelayConfig
	pool     *pgxpool.Pool
	producer *kgo.Client
	log      *slog.Logger
	m        relayMetrics
}

type relayMetrics struct {
	published prometheus.Counter
	latency   prometheus.Histogram
	pending   prometheus.Gauge
	oldest    prometheus.Gauge
	leader    prometheus.Gauge
}

// NewRelay returns a relay reading pool's outbox and producing with producer, which must be a client
// used by this relay alone (it aborts the client's buffered records when it loses leadership) and an
// idempotent producer with acks=all (franz-go's default). Metrics are registered on reg.
func NewRelay(pool *pgxpool.Pool, producer *kgo.Client, log *slog.Logger, reg prometheus.Registerer, cfg RelayConfig) *Relay {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.LeaderRetry <= 0 {
		cfg.LeaderRetry = 2 * time.Second
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 30 * time.Second
	}
	if cfg.Coalesce == 0 {
		cfg.Coalesce = 2 * time.Millisecond
	}
	if cfg.LockKey == "" {
		cfg.LockKey = "orderflow-outbox-relay"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := relayMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_published_total", Help: "Outbox rows published to Kafka."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "outbox_publish_latency_seconds",
			Help:    "Time from the outbox insert to Kafka's acknowledgement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30}}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_pending_rows", Help: "Committed outbox rows not yet published."}),
		oldest:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_oldest_pending_age_seconds", Help: "Age of the oldest unpublished outbox row."}),
		leader:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_relay_active", Help: "1 when this relay holds the publishing lock."}),
	}
	reg.MustRegister(m.published, m.latency, m.pending, m.oldest, m.leader)
	return &Relay{cfg: cfg, pool: pool, producer: producer, log: log, m: m}
}

// Run competes for leadership and, while leader, publishes until ctx is cancelled. Errors (Postgres
// or Kafka down) are logged and retried with backoff; Run returns only when ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	go r.reportBacklog(ctx)
	delay := r.cfg.LeaderRetry
	for ctx.Err() == nil {
		err := r.lead(ctx)
		r.m.leader.Set(0)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			r.log.Warn("outbox relay interrupted, retrying", "err", err, "in", delay)
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	return nil
}

// lead holds a dedicated connection that owns the advisory lock and listens for NOTIFY. It returns
// nil when another relay is leader (try again later) and an error when the connection failed.
func (r *Relay) lead(ctx context.Context) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	// The session-level lock lives as long as this connection; take it out of the pool and close it
	// at the end, so the lock is never left behind on a pooled connection.
	conn := pc.Hijack()
	defer func() { _ = conn.Close(context.Background()) }()
	// Before the lock is released (conn closed above, deferred first), make sure no record of ours is
	// still buffered: a late delivery after the next leader started would break per-order order.
	defer func() {
		actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.producer.AbortBufferedRecords(actx); err != nil {
			r.log.Warn("could not settle buffered records before releasing leadership", "err", err)
		}
	}()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, r.cfg.LockKey).Scan(&got); err != nil {
		return fmt.Errorf("advisory lock: %w", err)
	}
	if !got {
		return nil
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r.m.leader.Set(1)
	r.log.Info("outbox relay active")
	lastPurge := time.Time{}
	var acked []int64 // published rows not yet marked; marked by the next read (one round trip)
	for ctx.Err() == nil {
		n, next, err := r.publishBatch(ctx, acked)
		if err != nil {
			return err
		}
		acked = next
		if time.Since(lastPurge) > time.Minute {
			if err := r.purge(ctx); err != nil {
				r.log.Warn("outbox purge failed", "err", err)
			}
			lastPurge = time.Now()
		}
		if n >= r.cfg.BatchSize {
			continue // a full batch: more is waiting
		}
		// What was just published is marked by the next read, which a NOTIFY usually triggers within
		// milliseconds under load; when none comes, the read runs after markDelay, so sent rows are
		// not left unmarked for a whole poll interval.
		wait := r.cfg.PollInterval
		if len(acked) > 0 {
			wait = min(wait, markDelay)
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		_, err = conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil && r.cfg.Coalesce > 0:
			time.Sleep(r.cfg.Coalesce)
		case err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
	if len(acked) > 0 { // leaving: mark what was published (else it is published again, harmlessly)
		mctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = r.pool.Exec(mctx, `UPDATE outbox SET sent_at = now() WHERE id = ANY($1)`, acked)
	}
	return nil
}

// markDelay bounds how long published rows wait for the read that marks them when no new row
// arrives.
const markDelay = 50 * time.Millisecond

type row struct {
	id        int64
	topic     string
	key       string
	value     []byte
	createdAt time.Time
}

// publishBatch marks the rows of the previous round as sent and reads the next unsent rows in id
// order in one statement, publishes them, and returns how many it read and the ids Kafka
// acknowledged (the prefix up to the first failure, so a later row of an order is never marked
// before an earlier one).
func (r *Relay) publishBatch(ctx context.Context, mark []int64) (int, []int64, error) {
	if mark == nil {
		mark = []int64{}
	}
	rows, err := r.pool.Query(ctx, `WITH marked AS (UPDATE outbox SET sent_at = now() WHERE id = ANY($1))
		SELECT id, topic, record_key, value, created_at FROM outbox
		WHERE sent_at IS NULL AND NOT (id = ANY($1)) ORDER BY id LIMIT $2`, mark, r.cfg.BatchSize)
	if err != nil {
		return 0, mark, fmt.Errorf("read outbox: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(rw pgx.CollectableRow) (row, error) {
		var x row
		return x, rw.Scan(&x.id, &x.topic, &x.key, &x.value, &x.createdAt)
	})
	if err != nil {
		return 0, mark, fmt.Errorf("read outbox: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil, nil
	}
	recs := make([]*kgo.Record, len(batch))
	for i, x := range batch {
		rec, err := r.record(x)
		if err != nil {
			return 0, nil, err
		}
		recs[i] = rec
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	results := r.producer.ProduceSync(pctx, recs...)
	cancel()
	ids := make([]int64, 0, len(batch))
	var firstErr error
	for i, res := range results {
		if res.Err != nil {
			firstErr = res.Err
			break
		}
		ids = append(ids, batch[i].id)
	}
	now := time.Now()
	for _, x := range batch[:len(ids)] {
		r.m.latency.Observe(now.Sub(x.createdAt).Seconds())
	}
	r.m.published.Add(float64(len(ids)))
	if firstErr != nil {
		return len(ids), ids, fmt.Errorf("publish: %w", firstErr)
	}
	return len(batch), ids, nil
}

// record sets producedAt in the stored envelope and adds the routing headers.
func (r *Relay) record(x row) (*kgo.Record, error) {
	var e event.Envelope
	if err := json.Unmarshal(x.value, &e); err != nil {
		return nil, fmt.Errorf("outbox row %d holds an undecodable envelope: %w", x.id, err)
	}
	now := r.cfg.Now().UTC().Truncate(time.Microsecond)
	if now.Before(e.OccurredAt) {
		now = e.OccurredAt // producedAt >= occurredAt even with clock skew between writers
	}
	e.ProducedAt = now
	v, err := e.Encode()
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: x.topic, Key: []byte(x.key), Value: v, Headers: []kgo.RecordHeader{
		{Key: "eventType", Value: []byte(e.EventType)},
		{Key: "eventId", Value: []byte(e.EventID)},
		{Key: "correlationId", Value: []byte(e.CorrelationID)},
	}}, nil
}

func (r *Relay) purge(ctx context.Context) error {
	_, err := r.pool.Exec(ctx, `DELETE FROM outbox WHERE id IN (
		SELECT id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - $1::interval LIMIT 10000)`,
		r.cfg.Retention.String())
	return err
}

// reportBacklog refreshes the pending gauges every few seconds (every replica reports, leader or not).
func (r *Relay) reportBacklog(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		var n int64
		var oldest *time.Time
		err := r.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM outbox WHERE sent_at IS NULL`).Scan(&n, &oldest)
		if err == nil {
			r.m.pending.Set(float64(n))
			if oldest != nil {
				r.m.oldest.Set(time.Since(*oldest).Seconds())
			} else {
				r.m.oldest.Set(0)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
