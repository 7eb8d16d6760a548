package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// RelayConfig configures a Relay. Zero values take the documented defaults.
type RelayConfig struct {
	// BatchSize is the most rows published per round (default 500).
	BatchSize int
	// PollInterval is how often the table is read as a safety net (default 1s).
	PollInterval time.Duration
	// Retention keeps sent rows this long before purging them, so they can be republished (default 24h).
	Retention time.Duration
	// LeaderRetry is how often a standby relay tries to become the active one (default 2s).
	LeaderRetry time.Duration
	// PublishTimeout bounds one batch's wait for Kafka; unacknowledged rows stay unsent (default 30s).
	PublishTimeout time.Duration
	// Coalesce is how long the relay waits for another notification after one arrived, so rows
	// committed at nearly the same moment go out in one request (default 200µs; negative disables).
	// It waits only during a burst (the notification came less than 10 × Coalesce after the relay
	// went idle, e.g. it queued while the previous batch was being published): a lone notification
	// goes out at once instead of paying a timer and a wake-up for nothing.
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
	reads     prometheus.Counter
	latency   prometheus.Histogram
	pending   prometheus.Gauge
	oldest    prometheus.Gauge
	leader    prometheus.Gauge
}

// NewRelay returns a relay reading pool's outbox and producing with producer, an idempotent producer
// with acks=all (franz-go's default). Metrics are registered on reg.
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
		cfg.Coalesce = 200 * time.Microsecond
	}
	if cfg.LockKey == "" {
		cfg.LockKey = "orderflow-outbox-relay"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := relayMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_published_total", Help: "Outbox rows published to Kafka."}),
		reads: prometheus.NewCounter(prometheus.CounterOpts{Name: "outbox_table_reads_total",
			Help: "Reads of unsent outbox rows (at start, for events too large for a NOTIFY, and once per poll interval); other events arrive with their NOTIFY."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "outbox_publish_latency_seconds",
			Help:    "Time from the event's creation (occurredAt, in the writing transaction) to Kafka's acknowledgement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30}}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_pending_rows", Help: "Committed outbox rows not yet published."}),
		oldest:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_oldest_pending_age_seconds", Help: "Age of the oldest unpublished outbox row."}),
		leader:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_relay_active", Help: "1 when this relay holds the publishing lock."}),
	}
	reg.MustRegister(m.published, m.reads, m.latency, m.pending, m.oldest, m.leader)
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
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, r.cfg.LockKey).Scan(&got); err != nil {
		return fmt.Errorf("advisory lock: %w", err)
	}
	if !got {
		return nil
	}
	// Before the lock is released (conn closed above, deferred first), make sure no record of ours is
	// still buffered: a late delivery after the next leader started would break per-order order. The
	// client may be shared (a consumer's DLQ writes): those fail with ErrAborting and are retried.
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.producer.Flush(fctx); err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.producer.AbortBufferedRecords(actx); err != nil {
			r.log.Warn("could not settle buffered records before releasing leadership", "err", err)
		}
	}()
	// Listen before the first read: a row committed in between is then both read and notified, and
	// the notification is skipped (recent); none is missed.
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r.m.leader.Set(1)
	r.log.Info("outbox relay active")
	st := &leaderState{recent: map[string]time.Time{}}
	defer func() { // leaving: mark what was published (else it is published again, harmlessly)
		mctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.mark(mctx, st)
	}()
	lastPurge := time.Time{}
	if err := r.readTable(ctx, st); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if time.Since(lastPurge) > time.Minute {
			if err := r.purge(ctx); err != nil {
				r.log.Warn("outbox purge failed", "err", err)
			}
			st.forget(time.Now().Add(-recentFor))
			lastPurge = time.Now()
		}
		wait := r.cfg.PollInterval - time.Since(st.lastRead)
		if len(st.unmarked) > 0 {
			wait = min(wait, time.Until(st.markDue))
		}
		idle := time.Now()
		n, err := waitNotification(ctx, conn, max(wait, 0))
		if err != nil {
			return err
		}
		if n != nil {
			notes := []*pgconn.Notification{n}
			burst := time.Since(idle) < 10*r.cfg.Coalesce
			for burst && r.cfg.Coalesce > 0 && len(notes) < r.cfg.BatchSize { // what arrives meanwhile goes out in the same request
				m, err := waitNotification(ctx, conn, r.cfg.Coalesce)
				if err != nil {
					return err
				}
				if m == nil {
					break
				}
				notes = append(notes, m)
			}
			if err := r.handle(ctx, st, notes); err != nil {
				return err
			}
		}
		if time.Since(st.lastRead) >= r.cfg.PollInterval { // safety net: nothing stays unsent longer
			if err := r.readTable(ctx, st); err != nil {
				return err
			}
		}
		if len(st.unmarked) >= r.cfg.BatchSize || (len(st.unmarked) > 0 && !time.Now().Before(st.markDue)) {
			if err := r.mark(ctx, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitNotification returns the next notification, or nil when none arrives within wait.
func waitNotification(ctx context.Context, conn *pgx.Conn, wait time.Duration) (*pgconn.Notification, error) {
	wctx, cancel := context.WithTimeout(ctx, max(wait, time.Microsecond))
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	switch {
	case err == nil:
		return n, nil
	case ctx.Err() != nil:
		return nil, nil // shutting down; the caller's loop ends
	case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
		return nil, nil
	}
	return nil, fmt.Errorf("wait for notification: %w", err)
}

// markDelay bounds how long published rows wait to be marked sent; marks are batched because a
// lost mark only means the row is published again.
const markDelay = 50 * time.Millisecond

// recentFor is how long the event ids of rows published from a table read are remembered, to skip
// their notifications (which arrive at once, having been queued before the read finished).
const recentFor = time.Minute

// leaderState is what the active relay tracks between rounds.
type leaderState struct {
	unmarked []string             // event ids Kafka acknowledged and not yet marked sent
	markDue  time.Time            // when the oldest of them must be marked
	recent   map[string]time.Time // event ids published from a table read
	lastRead time.Time
}

func (st *leaderState) acked(ids []string) {
	if len(st.unmarked) == 0 && len(ids) > 0 {
		st.markDue = time.Now().Add(markDelay)
	}
	st.unmarked = append(st.unmarked, ids...)
}

func (st *leaderState) forget(before time.Time) {
	for id, t := range st.recent {
		if t.Before(before) {
			delete(st.recent, id)
		}
	}
}

// handle publishes the events carried by notes, in order; an empty payload (events too large to
// carry) or one it cannot parse reads the table at that point.
func (r *Relay) handle(ctx context.Context, st *leaderState, notes []*pgconn.Notification) error {
	var pending []notified
	for _, n := range notes {
		var evs []notified
		if n.Payload != "" {
			var err error
			if evs, err = parseFrames(n.Payload); err != nil {
				// Not written by Queue (or by an older version): its rows (if any) are in the table, read
				// right here like an empty payload's, so they still go out before later notifications' events.
				r.log.Warn("outbox notification without readable events; reading the table", "err", err)
			}
		}
		if evs == nil {
			if err := r.publish(ctx, st, pending); err != nil {
				return err
			}
			pending = nil
			if err := r.readTable(ctx, st); err != nil {
				return err
			}
			continue
		}
		for _, e := range evs {
			if _, dup := st.recent[e.id]; !dup {
				pending = append(pending, e)
			}
		}
	}
	return r.publish(ctx, st, pending)
}

// readTable marks what was published and reads the unsent rows in id order, publishing them, until
// a read returns less than a full batch.
func (r *Relay) readTable(ctx context.Context, st *leaderState) error {
	for {
		rows, err := r.pool.Query(ctx, `WITH marked AS (UPDATE outbox SET sent_at = now() WHERE event_id = ANY($1::text[]::uuid[]))
			SELECT topic, value, coalesce(traceparent, ''), coalesce(tracestate, '') FROM outbox
			WHERE sent_at IS NULL AND NOT (event_id = ANY($1::text[]::uuid[])) ORDER BY id LIMIT $2`,
			st.unmarkedOrEmpty(), r.cfg.BatchSize)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		type row struct {
			Topic         string
			Value         []byte
			Parent, State string
		}
		values, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		r.m.reads.Inc()
		st.unmarked, st.lastRead = nil, time.Now()
		evs := make([]notified, len(values))
		for i, v := range values {
			var e event.Envelope
			if err := json.Unmarshal(v.Value, &e); err != nil {
				return fmt.Errorf("outbox row holds an undecodable envelope: %w", err)
			}
			if evs[i], err = fromEnvelope(e); err != nil {
				return fmt.Errorf("outbox row %s: %w", e.EventID, err)
			}
			// The row's own topic: a newer version may write event types this build does not know.
			evs[i].topic = v.Topic
			evs[i].trace = event.Trace{Parent: v.Parent, State: v.State}
		}
		now := time.Now()
		for _, e := range evs {
			st.recent[e.id] = now
		}
		if err := r.publish(ctx, st, evs); err != nil {
			return err
		}
		if len(values) < r.cfg.BatchSize {
			return nil
		}
	}
}

func (st *leaderState) unmarkedOrEmpty() []string {
	if st.unmarked == nil {
		return []string{}
	}
	return st.unmarked
}

// mark records the acknowledged rows as sent.
func (r *Relay) mark(ctx context.Context, st *leaderState) error {
	if len(st.unmarked) == 0 {
		return nil
	}
	if _, err := r.pool.Exec(ctx, `UPDATE outbox SET sent_at = now() WHERE event_id = ANY($1::text[]::uuid[])`, st.unmarked); err != nil {
		return fmt.Errorf("mark outbox rows sent: %w", err)
	}
	st.unmarked = nil
	return nil
}

// publish produces evs in order and waits for Kafka. The acknowledged prefix (up to the first
// failure, so a later event of an order is never marked before an earlier one) becomes unmarked.
// Waiting is what batches: notifications queue meanwhile and go out in the next request, so batches
// grow with the load (producing without waiting was slower at 300 orders/s: docs/benchmarks.md).
func (r *Relay) publish(ctx context.Context, st *leaderState, evs []notified) error {
	if len(evs) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(evs))
	for i := range evs {
		rec, err := r.record(&evs[i])
		if err != nil {
			return err
		}
		recs[i] = rec
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	for i, rec := range recs {
		tc := evs[i].trace
		switch {
		case obs.Sampled(tc.Parent):
			// The producer's tracing hooks (kafka.Config.Tracer) make the publish span a child of
			// the context the event was written in and send it in the headers.
			rec.Context = obs.WithTrace(pctx, tc.Parent, tc.State)
		case tc.Parent != "":
			// Not recorded: the context goes on as it was stored, no span is made for it.
			rec.Context = pctx
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "traceparent", Value: []byte(tc.Parent)})
			if tc.State != "" {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "tracestate", Value: []byte(tc.State)})
			}
		default:
			rec.Context = pctx
		}
	}
	results := r.producer.ProduceSync(pctx, recs...)
	cancel()
	ids := make([]string, 0, len(evs))
	var firstErr error
	for i, res := range results {
		if res.Err != nil {
			firstErr = res.Err
			break
		}
		ids = append(ids, evs[i].id)
	}
	now := time.Now()
	for _, e := range evs[:len(ids)] {
		r.m.latency.Observe(now.Sub(e.occurredAt).Seconds())
	}
	r.m.published.Add(float64(len(ids)))
	st.acked(ids)
	if firstErr != nil {
		return fmt.Errorf("publish: %w", firstErr)
	}
	return nil
}

// record stamps producedAt into the envelope and adds the routing headers.
func (r *Relay) record(e *notified) (*kgo.Record, error) {
	topic := e.topic
	if topic == "" {
		return nil, fmt.Errorf("outbox event %s has no topic", e.id)
	}
	now := r.cfg.Now().UTC().Truncate(time.Microsecond)
	if now.Before(e.occurredAt) {
		now = e.occurredAt.UTC() // producedAt >= occurredAt even with clock skew between writers
	}
	return &kgo.Record{Topic: topic, Key: []byte(e.key), Value: stamp(e.value, now), Headers: []kgo.RecordHeader{
		{Key: "eventType", Value: []byte(e.typ)},
		{Key: "eventId", Value: []byte(e.id)},
		{Key: "correlationId", Value: []byte(e.correlation)},
	}}, nil
}

func (r *Relay) purge(ctx context.Context) error {
	_, err := pg.Retention{Table: "outbox", Column: "sent_at", Keep: r.cfg.Retention}.Purge(ctx, r.pool)
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
