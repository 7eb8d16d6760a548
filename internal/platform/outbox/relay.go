package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
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
func (r *Relay) lead(ctx context.Context) (err error) {
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
	// Listen before the first read: a row committed in between is then both read and notified, and
	// the notification is skipped (recent); none is missed.
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r.m.leader.Set(1)
	r.log.Info("outbox relay active")
	// The first failed publish cancels lctx: nothing more is handed to the producer and the term ends.
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st := &leaderState{recent: map[string]time.Time{}, flight: &flight{inFlight: map[string]struct{}{}, fail: cancel}}
	defer func() { r.leave(st, err == nil) }()
	err = r.serve(lctx, conn, st)
	if ferr := st.flight.failure(); ferr != nil && ctx.Err() == nil {
		return ferr
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// serve publishes what is notified (and, as a safety net, what the table holds) until ctx ends or
// something fails. Publishing is pipelined: events go to the producer as their notifications arrive
// and acknowledgements are collected on the way round, so no batch waits for the previous one's
// round trip, and marks run beside it, so a slow commit does not hold up publishing.
func (r *Relay) serve(ctx context.Context, conn *pgx.Conn, st *leaderState) error {
	lastPurge := time.Time{}
	if err := r.readTable(ctx, st); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if err := st.markSettled(false); err != nil {
			return err
		}
		if time.Since(lastPurge) > time.Minute {
			if err := r.purge(ctx); err != nil {
				r.log.Warn("outbox purge failed", "err", err)
			}
			st.forget(time.Now().Add(-recentFor))
			lastPurge = time.Now()
		}
		st.collect()
		wait := r.cfg.PollInterval - time.Since(st.lastRead)
		if len(st.unmarked) > 0 {
			wait = min(wait, time.Until(st.markDue))
		}
		if st.flight.busy() { // come back for the acknowledgements, to mark them
			wait = min(wait, markDelay)
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
		st.collect()
		due := len(st.unmarked) >= r.cfg.BatchSize || (len(st.unmarked) > 0 && !time.Now().Before(st.markDue))
		if due && st.markDone == nil {
			r.startMark(st)
		}
	}
	return nil
}

// leave ends a term: what was acknowledged is marked sent (else it is published again, harmlessly).
// After a clean end (shutdown) the records in flight are given a moment to be acknowledged first.
func (r *Relay) leave(st *leaderState, clean bool) {
	ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
	defer cancel()
	if clean {
		_ = r.producer.Flush(ctx)
	}
	_ = st.markSettled(true)
	st.collect()
	_ = r.mark(ctx, st.unmarked)
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

// markDelay bounds how long published rows wait to be marked sent. A lost mark only means the row
// is published again (consumers drop the duplicate), so marks are batched for up to a second: with
// the default poll interval the safety-net read, which marks in the same statement, usually does it,
// and a mark costs no commit of its own (about one Postgres commit in five per order otherwise).
const markDelay = time.Second

// markTimeout bounds one mark, which runs on its own context so that shutdown does not cut it short.
const markTimeout = 5 * time.Second

// recentFor is how long the event ids of rows published from a table read are remembered, to skip
// their notifications (which arrive at once, having been queued before the read finished).
const recentFor = time.Minute

// leaderState is what the active relay tracks between rounds.
type leaderState struct {
	flight   *flight
	unmarked []string             // event ids Kafka acknowledged and not yet marked sent
	markDue  time.Time            // when the oldest of them must be marked
	marking  []string             // event ids being marked by the running mark
	markDone chan error           // the running mark's outcome; nil when none runs
	recent   map[string]time.Time // event ids published from a table read
	lastRead time.Time
}

// collect moves the acknowledgements that arrived since the last call to unmarked.
func (st *leaderState) collect() {
	ids := st.flight.take()
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

// startMark marks the unmarked rows sent in a goroutine; one mark runs at a time.
func (r *Relay) startMark(st *leaderState) {
	ids, done := st.unmarked, make(chan error, 1)
	st.unmarked, st.marking, st.markDone = nil, ids, done
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
		defer cancel()
		done <- r.mark(ctx, ids)
	}()
}

// markSettled reports the outcome of the running mark once it finished (wait: block until then).
func (st *leaderState) markSettled(wait bool) error {
	if st.markDone == nil {
		return nil
	}
	var err error
	if wait {
		err = <-st.markDone
	} else {
		select {
		case err = <-st.markDone:
		default:
			return nil
		}
	}
	st.marking, st.markDone = nil, nil
	return err
}

// flight is what this term handed to the producer: the events whose outcome is not known yet and
// the acknowledgements the loop has not collected. Promises update it from franz-go's goroutine.
type flight struct {
	mu       sync.Mutex
	inFlight map[string]struct{}
	acked    []string
	err      error
	fail     context.CancelCauseFunc
}

func (f *flight) add(evs []notified) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range evs {
		f.inFlight[evs[i].id] = struct{}{}
	}
}

// settle records an event's outcome and reports whether it counts as acknowledged. Franz-go calls
// promises one at a time, in order within a partition, and fails every record buffered behind a
// failed one in its partition; so once anything failed, no later acknowledgement is collected, and
// a later event of an order is never marked sent while an earlier one is not.
func (f *flight) settle(id string, err error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.inFlight, id)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("publish event %s: %w", id, err)
		f.fail(f.err)
	}
	if f.err != nil {
		return false
	}
	f.acked = append(f.acked, id)
	return true
}

// take returns the acknowledgements since the last call.
func (f *flight) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := f.acked
	f.acked = nil
	return ids
}

// held returns the events in flight or acknowledged and not yet collected, in one snapshot (an
// event leaves the first set only for the second).
func (f *flight) held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.inFlight)+len(f.acked))
	for id := range f.inFlight {
		ids = append(ids, id)
	}
	return append(ids, f.acked...)
}

// busy reports whether acknowledgements are outstanding or waiting to be collected.
func (f *flight) busy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.inFlight) > 0 || len(f.acked) > 0
}

func (f *flight) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
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

// readTable marks what was acknowledged and reads the unsent rows in id order, except those in
// flight or being marked, publishing them, until a read returns less than a full batch. Rows handed
// to the producer earlier are ahead of these in their partitions, so commit order per order holds.
func (r *Relay) readTable(ctx context.Context, st *leaderState) error {
	for {
		st.collect()
		skip := append(append(st.flight.held(), st.marking...), st.unmarked...)
		rows, err := r.pool.Query(ctx, `WITH marked AS (UPDATE outbox SET sent_at = now() WHERE event_id = ANY($1::text[]::uuid[]))
			SELECT value FROM outbox WHERE sent_at IS NULL AND NOT (event_id = ANY($2::text[]::uuid[])) ORDER BY id LIMIT $3`,
			orEmpty(st.unmarked), skip, r.cfg.BatchSize)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		values, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		r.m.reads.Inc()
		st.unmarked, st.lastRead = nil, time.Now()
		evs := make([]notified, len(values))
		for i, v := range values {
			var e event.Envelope
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("outbox row holds an undecodable envelope: %w", err)
			}
			if evs[i], err = fromEnvelope(e); err != nil {
				return fmt.Errorf("outbox row %s: %w", e.EventID, err)
			}
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

func orEmpty(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}

// mark records the acknowledged rows as sent.
func (r *Relay) mark(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := r.pool.Exec(ctx, `UPDATE outbox SET sent_at = now() WHERE event_id = ANY($1::text[]::uuid[])`, ids); err != nil {
		return fmt.Errorf("mark outbox rows sent: %w", err)
	}
	return nil
}

// publish hands evs to the producer in order without waiting for Kafka; their outcomes reach
// st.flight. A batch not acknowledged within PublishTimeout fails (its unsent records are dropped
// by franz-go), which ends the term.
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
	b := &batch{done: cancel}
	b.left.Store(int64(len(recs)))
	st.flight.add(evs)
	for i, rec := range recs {
		id, at := evs[i].id, evs[i].occurredAt
		r.producer.Produce(pctx, rec, func(_ *kgo.Record, err error) {
			if st.flight.settle(id, err) {
				r.m.latency.Observe(time.Since(at).Seconds())
				r.m.published.Inc()
			}
			b.settled()
		})
	}
	return nil
}

// batch releases one publish's timeout once all its records have an outcome.
type batch struct {
	left atomic.Int64
	done context.CancelFunc
}

func (b *batch) settled() {
	if b.left.Add(-1) == 0 {
		b.done()
	}
}

// record stamps producedAt into the envelope and adds the routing headers.
func (r *Relay) record(e *notified) (*kgo.Record, error) {
	topic := event.Type(e.typ).Topic()
	if topic == "" {
		return nil, fmt.Errorf("outbox event %s has type %q, which has no topic", e.id, e.typ)
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
