package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
)

// Handler applies decoded events of one partition, in their order, all or nothing (typically one
// database transaction). Returning nil acknowledges them all. On an error the runner calls it again
// with each half of the events, down to single events, so one bad event cannot hold up the others;
// a single event's error is retried with backoff and dead-lettered by its class (see Permanent and
// Unavailable). Handlers must be idempotent: a record can be delivered again after a crash or
// rebalance (use the inbox).
type Handler func(ctx context.Context, es []event.Envelope) error

// RunnerConfig configures a consumer Runner.
type RunnerConfig struct {
	Group   string   // consumer group; persistent state, never rename casually
	Topics  []string // topics to consume
	Handler Handler
	// BatchSize bounds the events of one Handler call (default 100; 1 hands over one at a time).
	BatchSize int
	// MaxAttempts bounds the attempts for an ordinary error before dead-lettering (default 5).
	// Unavailable errors are retried without limit; Permanent errors are not retried.
	MaxAttempts int
	Backoff     Backoff
	// Unavailable classifies unmarked handler errors as "dependency down" (retried without limit),
	// e.g. pg.IsUnavailable; errors marked with Unavailable are always treated so.
	Unavailable func(error) bool
	// DLQTopic maps a source topic to its dead-letter topic (default event.DLQFor).
	DLQTopic func(topic string) string
	// OnJoined is called once, after the first partition assignment (readiness).
	OnJoined func()
	// SessionTimeout is how long the group waits for a crashed member before giving its partitions
	// to others (default 10s; Kafka's own default of 45s would stall those partitions that long).
	SessionTimeout time.Duration
	// FetchMinBytes and FetchMaxWait replace the client's (Config) for this consumer: a consumer
	// off the saga's path can fetch seldom and in bulk.
	FetchMinBytes int32
	FetchMaxWait  time.Duration
	// QueueLimit pauses fetching a partition whose worker has this many records queued (default 2000).
	QueueLimit int
	// LagEvery is how often the group's lag of this instance's partitions is read from the broker
	// (default 15s).
	LagEvery time.Duration
	Log      *slog.Logger
	Metrics  *RunnerMetrics
	// Now is the clock used for x-failed-at (default time.Now).
	Now func() time.Time
}

// DLQ header names written on every dead-lettered record.
const (
	HeaderRetryCount        = "x-retry-count"
	HeaderOriginalTopic     = "x-original-topic"
	HeaderOriginalPartition = "x-original-partition"
	HeaderOriginalOffset    = "x-original-offset"
	HeaderConsumerGroup     = "x-consumer-group"
	HeaderError             = "x-error"
	HeaderFailedAt          = "x-failed-at"
)

// RunnerMetrics are the consumer metrics; create one per registry with NewRunnerMetrics.
type RunnerMetrics struct {
	consumed *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	dlq      *prometheus.CounterVec
	lag      *prometheus.GaugeVec
	splits   *prometheus.CounterVec
}

// NewRunnerMetrics registers the consumer metrics on reg.
func NewRunnerMetrics(reg prometheus.Registerer) *RunnerMetrics {
	m := &RunnerMetrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kafka_consumer_events_total",
			Help: "Events consumed by topic, event type and outcome (processed, dead_lettered)."}, []string{"group", "topic", "type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kafka_consumer_handler_duration_seconds",
			Help:    "Time spent in the handler per event, including retries.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}}, []string{"group", "topic", "type"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kafka_consumer_retries_total",
			Help: "Handler attempts that failed and were retried."}, []string{"group", "topic"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kafka_consumer_dlq_total",
			Help: "Records written to a dead-letter topic."}, []string{"group", "topic", "dlq"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kafka_consumer_lag",
			Help: "Records between the group's committed offset and the partition's end offset, as the broker sees them, for the partitions this instance owns; read on a timer, so a stuck partition shows growing lag."},
			[]string{"group", "topic", "partition"}),
		splits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kafka_consumer_batch_splits_total",
			Help: "Batches that failed and were handed to the handler again in halves (a steady rate means batches rarely succeed whole)."}, []string{"group", "topic"}),
	}
	reg.MustRegister(m.consumed, m.duration, m.retries, m.dlq, m.lag, m.splits)
	return m
}

// Lag is the kafka_consumer_lag gauge (for tests).
func (m *RunnerMetrics) Lag() *prometheus.GaugeVec { return m.lag }

// Runner consumes a group with one goroutine per assigned partition. Records of a partition are
// handled strictly in order; an offset is marked only after its handler returned nil or the record
// was written to the DLQ, and marked offsets are committed periodically, on revoke and on shutdown.
type Runner struct {
	cfg    RunnerConfig
	kcfg   Config
	cl     *kgo.Client
	mu     sync.Mutex
	parts  map[tp]*worker
	joined sync.Once
}

type tp struct {
	topic     string
	partition int32
}

// NewRunner creates the consumer client. Run starts consuming.
func NewRunner(kcfg Config, cfg RunnerConfig) (*Runner, error) {
	if cfg.Group == "" || len(cfg.Topics) == 0 || cfg.Handler == nil || cfg.Log == nil || cfg.Metrics == nil {
		return nil, errors.New("runner: Group, Topics, Handler, Log and Metrics are required")
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.DLQTopic == nil {
		cfg.DLQTopic = event.DLQFor
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 2000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LagEvery <= 0 {
		cfg.LagEvery = 15 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	r := &Runner{cfg: cfg, kcfg: kcfg, parts: map[tp]*worker{}}
	if kcfg.ClientID == "" {
		kcfg.ClientID = cfg.Group
	}
	cl, err := kgo.NewClient(kcfg.Options(
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(r.assigned),
		kgo.OnPartitionsRevoked(r.revoked),
		kgo.OnPartitionsLost(r.lost),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(time.Second, cfg.SessionTimeout/3)),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		// Revocation callbacks run only between polls, so a partition's records are never handed to a
		// worker that was already told to stop.
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(cmp.Or(cfg.FetchMaxWait, kcfg.FetchMaxWait, 500*time.Millisecond)),
		kgo.FetchMinBytes(cmp.Or(cfg.FetchMinBytes, kcfg.FetchMinBytes, 1)),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("runner client: %w", err)
	}
	r.cl = cl
	return r, nil
}

// Client is the runner's client. It also produces (the DLQ writes), so a service can use it for
// everything else it sends to Kafka, and for its health check.
func (r *Runner) Client() *kgo.Client { return r.cl }

// Close closes the client; call it after Run returned and every other user of Client is done.
func (r *Runner) Close() { r.cl.Close() }

// Run polls until ctx is cancelled, then stops the workers after their current record, commits
// what was marked and leaves the group; the client stays open for its other users (see Close).
func (r *Runner) Run(ctx context.Context) error {
	defer r.cl.LeaveGroup()
	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() { defer close(lagDone); r.reportLag(lagCtx) }()
	defer func() { stopLag(); <-lagDone }()
	for {
		fetches := r.cl.PollRecords(ctx, 10000)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			r.cl.AllowRebalance() // else leaving the group on Close waits for this poll's block forever
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				r.cfg.Log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			r.mu.Lock()
			w := r.parts[tp{p.Topic, p.Partition}]
			r.mu.Unlock()
			if w == nil {
				return // revoked meanwhile; the records will be redelivered to the new owner
			}
			if w.push(p.Records) >= r.cfg.QueueLimit {
				r.cl.PauseFetchPartitions(map[string][]int32{p.Topic: {p.Partition}})
			}
		})
		r.cl.AllowRebalance()
	}
	r.mu.Lock()
	all := make([]*worker, 0, len(r.parts))
	for k, w := range r.parts {
		all = append(all, w)
		delete(r.parts, k)
	}
	r.mu.Unlock()
	stopWorkers(all)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.cl.CommitMarkedOffsets(cctx); err != nil {
		r.cfg.Log.Warn("final commit failed; uncommitted records will be redelivered", "err", err)
	}
	return nil
}

// reportLag sets kafka_consumer_lag from the broker every LagEvery until ctx ends: end offset
// minus committed offset of each partition this instance owns. Unlike a value set after processing,
// it keeps growing while a partition is stuck. A partition that moved to another instance stops
// being reported here (its new owner reports it).
func (r *Runner) reportLag(ctx context.Context) {
	adm := kadm.NewClient(r.cl)
	t := time.NewTicker(r.cfg.LagEvery)
	defer t.Stop()
	reported := map[tp]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lags, err := adm.Lag(ctx, r.cfg.Group)
		if err != nil || lags.Error() != nil {
			if ctx.Err() == nil {
				r.cfg.Log.Debug("consumer lag unavailable", "err", errors.Join(err, lags.Error()))
			}
			continue
		}
		r.mu.Lock()
		owned := make(map[tp]bool, len(r.parts))
		for k := range r.parts {
			owned[k] = true
		}
		r.mu.Unlock()
		for topic, ps := range lags[r.cfg.Group].Lag {
			for p, l := range ps {
				k := tp{topic, p}
				if !owned[k] || l.Err != nil || l.Lag < 0 {
					continue
				}
				r.cfg.Metrics.lag.WithLabelValues(r.cfg.Group, topic, strconv.Itoa(int(p))).Set(float64(l.Lag))
				reported[k] = true
			}
		}
		for k := range reported {
			if !owned[k] {
				r.cfg.Metrics.lag.DeleteLabelValues(r.cfg.Group, k.topic, strconv.Itoa(int(k.partition)))
				delete(reported, k)
			}
		}
	}
}

func (r *Runner) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	r.mu.Lock()
	for topic, ps := range assigned {
		for _, p := range ps {
			w := newWorker(r, topic, p)
			r.parts[tp{topic, p}] = w
			go w.run()
		}
	}
	r.mu.Unlock()
	r.joined.Do(func() {
		if r.cfg.OnJoined != nil {
			r.cfg.OnJoined()
		}
	})
}

// revoked stops the workers of the revoked partitions (each finishes its current record) and
// commits what they marked, so the next owner starts exactly after the finished work.
func (r *Runner) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	stopWorkers(r.take(revoked))
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		r.cfg.Log.Warn("commit on revoke failed; records will be redelivered", "err", err)
	}
}

// lost stops workers without committing: the partitions already belong to someone else.
func (r *Runner) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	ws := r.take(lost)
	for _, w := range ws {
		w.cancel() // abandon in-flight work; it was not marked and will be redelivered
	}
	stopWorkers(ws)
}

func (r *Runner) take(m map[string][]int32) []*worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws []*worker
	for topic, ps := range m {
		for _, p := range ps {
			if w := r.parts[tp{topic, p}]; w != nil {
				ws = append(ws, w)
				delete(r.parts, tp{topic, p})
			}
		}
		r.cl.ResumeFetchPartitions(map[string][]int32{topic: ps})
	}
	return ws
}

func stopWorkers(ws []*worker) {
	for _, w := range ws {
		w.stop()
	}
	for _, w := range ws {
		<-w.done
	}
}
