package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/obs"
)

// attemptTimeout bounds one handler attempt, so a hung dependency cannot block shutdown forever.
const attemptTimeout = 30 * time.Second

// worker handles one partition's records in order. The poll loop appends to its queue and never
// blocks on it; a long queue pauses fetching for that partition only.
type worker struct {
	r         *Runner
	topic     string
	partition int32
	ctx       context.Context // handler context; cancelled only when the partition is lost
	cancel    context.CancelFunc
	quit      chan struct{} // closed by stop: finish the current record, then exit
	done      chan struct{}

	mu     sync.Mutex
	queue  []*kgo.Record
	paused bool
	wake   chan struct{}
	once   sync.Once
}

func newWorker(r *Runner, topic string, partition int32) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{r: r, topic: topic, partition: partition, ctx: ctx, cancel: cancel,
		quit: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}
}

func (w *worker) push(recs []*kgo.Record) int {
	w.mu.Lock()
	w.queue = append(w.queue, recs...)
	n := len(w.queue)
	if n >= w.r.cfg.QueueLimit {
		w.paused = true
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return n
}

func (w *worker) stop() { w.once.Do(func() { close(w.quit) }) }

func (w *worker) stopping() bool {
	select {
	case <-w.quit:
		return true
	default:
		return false
	}
}

// next takes up to n queued records.
func (w *worker) next(n int) []*kgo.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	n = min(n, len(w.queue))
	if n == 0 {
		return nil
	}
	recs := append([]*kgo.Record(nil), w.queue[:n]...)
	clear(w.queue[:n])
	w.queue = w.queue[n:]
	if w.paused && len(w.queue) < w.r.cfg.QueueLimit/2 {
		w.paused = false
		w.r.cl.ResumeFetchPartitions(map[string][]int32{w.topic: {w.partition}})
	}
	return recs
}

func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	for {
		if w.stopping() {
			return
		}
		recs := w.next(w.r.cfg.BatchSize)
		if len(recs) == 0 {
			select {
			case <-w.quit:
				return
			case <-w.wake:
			}
			continue
		}
		if !w.processAll(recs) {
			return // stopped before the records were finished: they stay unmarked and are redelivered
		}
	}
}

// processAll handles records in order: each run of decodable records goes to handle, an
// undecodable record straight to the DLQ.
func (w *worker) processAll(recs []*kgo.Record) bool {
	envs := make([]event.Envelope, len(recs))
	errs := make([]error, len(recs))
	for k, r := range recs {
		envs[k], errs[k] = event.Decode(r.Value)
		envs[k].Trace = w.startSpan(r, envs[k])
	}
	for i := 0; i < len(recs); {
		if errs[i] != nil {
			if !w.deadLetter(recs[i], "", 0, errs[i]) {
				return false
			}
			i++
			continue
		}
		j := i + 1
		for j < len(recs) && errs[j] == nil {
			j++
		}
		if !w.handle(recs[i:j], envs[i:j]) {
			return false
		}
		i = j
	}
	return true
}

// handle gives the handler the whole run; when that fails, each half in turn, down to single
// records (handleOne). It returns false when the worker was stopped first.
func (w *worker) handle(recs []*kgo.Record, envs []event.Envelope) bool {
	if len(recs) == 1 {
		return w.handleOne(recs[0], envs[0])
	}
	cfg := &w.r.cfg
	start := time.Now()
	ctx, cancel := context.WithTimeout(w.ctx, attemptTimeout)
	ctx, span := w.batchSpan(ctx, recs)
	err := cfg.Handler(ctx, envs)
	endSpan(span, err)
	cancel()
	if err == nil {
		w.processed(recs, envs, time.Since(start))
		return true
	}
	if w.ctx.Err() != nil {
		return false
	}
	cfg.Metrics.splits.WithLabelValues(cfg.Group, recs[0].Topic).Inc()
	cfg.Log.Debug("batch failed, handing it over in halves", "records", len(recs), "err", err)
	h := len(recs) / 2
	return w.handle(recs[:h], envs[:h]) && w.handle(recs[h:], envs[h:])
}

// processed counts and marks records the handler acknowledged in d.
func (w *worker) processed(recs []*kgo.Record, envs []event.Envelope, d time.Duration) {
	cfg := &w.r.cfg
	each := d.Seconds() / float64(len(recs))
	for k, r := range recs {
		cfg.Metrics.duration.WithLabelValues(cfg.Group, r.Topic, string(envs[k].EventType)).Observe(each)
		cfg.Metrics.consumed.WithLabelValues(cfg.Group, r.Topic, string(envs[k].EventType), "processed").Inc()
		endSpan(w.span(r), nil)
	}
	w.r.cl.MarkCommitRecords(recs...)
}

// wait sleeps d unless the worker is told to stop; it reports whether to continue.
func (w *worker) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.quit:
		return false
	case <-w.ctx.Done():
		return false
	}
}

// handleOne handles one record to completion (handled or dead-lettered, then marked), retrying by
// the error's class. It returns false when the worker was stopped first.
func (w *worker) handleOne(rec *kgo.Record, env event.Envelope) bool {
	cfg := &w.r.cfg
	ctx := obs.WithAttrs(w.ctx, "orderId", env.OrderID, "eventId", env.EventID, "correlationId", env.CorrelationID,
		"eventType", string(env.EventType), "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
	if span := w.span(rec); span != nil {
		ctx = trace.ContextWithSpan(ctx, span)
	}
	log := obs.Logger(ctx, cfg.Log)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := cfg.Handler(actx, []event.Envelope{env})
		cancel()
		if err == nil {
			w.processed([]*kgo.Record{rec}, []event.Envelope{env}, time.Since(start))
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		if span := w.span(rec); span != nil {
			span.RecordError(err, trace.WithAttributes(attribute.Int("orderflow.attempt", attempt)))
		}
		unavailable := IsUnavailable(err) || (cfg.Unavailable != nil && cfg.Unavailable(err) && !IsPermanent(err))
		switch {
		case IsPermanent(err):
			log.Warn("permanent handler error, dead-lettering", "err", err)
			return w.deadLetter(rec, env.EventType, attempt-1, err)
		case !unavailable && attempt >= cfg.MaxAttempts:
			log.Error("handler failed on every attempt, dead-lettering", "attempts", attempt, "err", err)
			return w.deadLetter(rec, env.EventType, attempt-1, err)
		}
		cfg.Metrics.retries.WithLabelValues(cfg.Group, rec.Topic).Inc()
		log.Warn("handler failed, retrying", "attempt", attempt, "unavailable", unavailable, "err", err)
		if !w.wait(cfg.Backoff.Delay(attempt)) {
			return false
		}
	}
}

// deadLetter writes the original record (key, value, headers) plus the x-* headers to the DLQ
// synchronously, retrying until it succeeds or the worker stops; only then is the offset marked.
func (w *worker) deadLetter(rec *kgo.Record, typ event.Type, retries int, cause error) bool {
	cfg := &w.r.cfg
	dlq := cfg.DLQTopic(rec.Topic)
	msg := cause.Error()
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	out := &kgo.Record{Topic: dlq, Key: rec.Key, Value: rec.Value,
		Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...),
			kgo.RecordHeader{Key: HeaderRetryCount, Value: []byte(strconv.Itoa(retries))},
			kgo.RecordHeader{Key: HeaderOriginalTopic, Value: []byte(rec.Topic)},
			kgo.RecordHeader{Key: HeaderOriginalPartition, Value: []byte(strconv.Itoa(int(rec.Partition)))},
			kgo.RecordHeader{Key: HeaderOriginalOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
			kgo.RecordHeader{Key: HeaderConsumerGroup, Value: []byte(cfg.Group)},
			kgo.RecordHeader{Key: HeaderError, Value: []byte(msg)},
			kgo.RecordHeader{Key: HeaderFailedAt, Value: []byte(cfg.Now().UTC().Format(time.RFC3339Nano))},
		)}
	if typ == "" {
		typ = "undecodable"
	}
	for attempt := 1; ; attempt++ {
		if dlq == "" {
			cfg.Log.Error("no dead-letter topic for source topic; partition paused", "topic", rec.Topic)
		} else {
			ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
			// Each attempt's own context on the record: franz-go keeps a record's context from its
			// first produce, so a retry would otherwise fail at once with the last attempt's
			// cancelled one. With tracing, the DLQ write's publish span is a child of the
			// record's processing.
			out.Context = ctx
			if span := w.span(rec); span != nil {
				out.Context = trace.ContextWithSpan(ctx, span)
			}
			err := w.r.cl.ProduceSync(ctx, out).FirstErr()
			cancel()
			if err == nil {
				endSpan(w.span(rec), fmt.Errorf("dead-lettered to %s: %w", dlq, cause))
				cfg.Metrics.dlq.WithLabelValues(cfg.Group, rec.Topic, dlq).Inc()
				cfg.Metrics.consumed.WithLabelValues(cfg.Group, rec.Topic, string(typ), "dead_lettered").Inc()
				w.r.cl.MarkCommitRecords(rec)
				return true
			}
			cfg.Log.Error("dead-letter write failed; partition paused until it succeeds", "dlq", dlq,
				"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		}
		if !w.wait(cfg.Backoff.Delay(attempt)) {
			return false
		}
	}
}

// startSpan marks, on rec's process span (started when it was fetched), that the worker took it and
// names the order and event; the span lives in rec.Context until the record is processed or
// dead-lettered. Events written while handling rec carry the returned context (env.Trace).
func (w *worker) startSpan(rec *kgo.Record, e event.Envelope) event.Trace {
	t := w.r.kcfg.Tracer
	if t == nil {
		return event.Trace{}
	}
	if unsampled(rec) {
		c := kotel.NewRecordCarrier(rec)
		return event.Trace{Parent: c.Get("traceparent"), State: c.Get("tracestate")} // passed on, unrecorded
	}
	span := w.span(rec)
	if span == nil { // not started at fetch: a client without the hooks
		span = startProcessSpan(t, rec)
	}
	span.AddEvent("handling")
	span.SetAttributes(attribute.String(obs.OrderIDKey, e.OrderID), attribute.String("orderflow.event_type", string(e.EventType)),
		attribute.String("orderflow.event_id", e.EventID))
	var tc event.Trace
	tc.Parent, tc.State = obs.TraceOf(rec.Context)
	return tc
}

// span is rec's process span, or nil when tracing is off or rec's trace is not recorded.
func (w *worker) span(rec *kgo.Record) trace.Span {
	if w.r.kcfg.Tracer == nil || rec.Context == nil {
		return nil
	}
	if s := trace.SpanFromContext(rec.Context); s.IsRecording() {
		return s
	}
	return nil
}

// batchSpan is the span of one handler call for several records: the work they share (one
// transaction, one Cassandra batch) is a child of the first recorded record's process span and
// links the other recorded ones, so each order's trace shows when its record was handled and the
// batch it was part of. No record recorded: no span.
func (w *worker) batchSpan(ctx context.Context, recs []*kgo.Record) (context.Context, trace.Span) {
	var parent trace.Span
	var links []trace.Link
	for _, r := range recs {
		switch s := w.span(r); {
		case s == nil:
		case parent == nil:
			parent = s
		default:
			links = append(links, trace.Link{SpanContext: s.SpanContext()})
		}
	}
	if parent == nil {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer("github.com/orderflow/orderflow/internal/platform/kafka").Start(
		trace.ContextWithSpan(ctx, parent), recs[0].Topic+" process batch", trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(recs))))
}

// endSpan ends span (nil: tracing off), marking it failed with err.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
