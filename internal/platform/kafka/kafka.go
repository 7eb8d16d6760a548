// Package kafka wraps franz-go for orderflow: client options, explicit topic set-up, a health check,
// the consumer runner (retries, dead-lettering) and the DLQ tools.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/platform/obs"
)

// Config locates the cluster and sets topic defaults.
type Config struct {
	Brokers           []string
	Partitions        int32 // per topic created by EnsureTopics; default 3
	ReplicationFactor int16 // default 1 (one broker)
	ClientID          string
	TLS               *tls.Config    // nil: plaintext
	SASL              sasl.Mechanism // nil: no authentication
	Compression       string         // producer batch codec: none (default), snappy, lz4, zstd or gzip
	// FetchMinBytes and FetchMaxWait are the consumer runner's fetch settings: the broker answers a
	// fetch once FetchMinBytes are there or FetchMaxWait has passed. Zero: 1 byte and 500 ms (answer
	// as soon as anything is there).
	FetchMinBytes int32
	FetchMaxWait  time.Duration
	// Tracer, when set, traces every record produced and fetched (franz-go's OpenTelemetry plugin:
	// a publish span per record produced, a process span per record fetched that lasts until the
	// Runner has handled it, the context in the traceparent/tracestate headers). nil: tracing off,
	// no hook installed.
	Tracer *kotel.Tracer
}

// Codec returns the producer compression codec named by Compression, or an error naming the choices.
func (c Config) Codec() (kgo.CompressionCodec, error) {
	switch c.Compression {
	case "", "none":
		return kgo.NoCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown Kafka compression %q (want none, snappy, lz4, zstd or gzip)", c.Compression)
}

// Options returns the franz-go options every client of the service shares. Callers append role
// options (consumer group, producer tuning).
func (c Config) Options(extra ...kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		// franz-go never asks the broker to auto-create topics unless told to; we never do, so a
		// missing topic is a visible set-up error.
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			return min(time.Duration(tries)*100*time.Millisecond, 2*time.Second)
		}),
	}
	// No compression by default (franz-go's is snappy): at linger 0 a batch is usually one small
	// envelope, and a compressed batch costs the producer, every consumer and the broker, which
	// decompresses it to validate it, for little space saved. The service config refuses an unknown
	// name at start-up; here it means none.
	codec, _ := c.Codec()
	opts = append(opts, kgo.ProducerBatchCompression(codec))
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(c.SASL))
	}
	if c.Tracer != nil {
		opts = append(opts, kgo.WithHooks(sampledOnly{c.Tracer}))
	}
	return append(opts, extra...)
}

// sampledOnly hands franz-go's tracing plugin the records whose trace is recorded, or that carry
// none (the sampler then decides for a new trace). A record of an unsampled trace keeps the
// traceparent it was given and gets no span: at a 10 % ratio the other 90 % of orders cost a header
// lookup per record, not three spans (docs/benchmarks.md).
type sampledOnly struct{ t *kotel.Tracer }

func (h sampledOnly) OnProduceRecordBuffered(r *kgo.Record) {
	if unsampled(r) {
		return
	}
	h.t.OnProduceRecordBuffered(r)
}

func (h sampledOnly) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if trace.SpanFromContext(r.Context).IsRecording() {
		h.t.OnProduceRecordUnbuffered(r, err)
	}
}

// OnFetchRecordBuffered starts the record's process span (franz-go's plugin: kind consumer, its
// messaging attributes, a child of the context in the headers) as soon as the record is fetched.
// The Runner ends it once the record is processed or dead-lettered, so one span per record and
// consumer covers the wait in the partition and the handling; the plugin's separate receive span,
// a quarter of all spans, is not made.
func (h sampledOnly) OnFetchRecordBuffered(r *kgo.Record) {
	if unsampled(r) {
		return
	}
	startProcessSpan(h.t, r)
}

// startProcessSpan puts into r.Context kotel's process span of r, a child of the trace context in
// r's headers, and returns it.
func startProcessSpan(t *kotel.Tracer, r *kgo.Record) trace.Span {
	var span trace.Span
	r.Context = obs.Propagator().Extract(context.Background(), kotel.NewRecordCarrier(r))
	r.Context, span = t.WithProcessSpan(r)
	return span
}

// unsampled reports whether r carries the context of a trace that is not recorded.
func unsampled(r *kgo.Record) bool {
	p := kotel.NewRecordCarrier(r).Get("traceparent")
	return p != "" && !obs.Sampled(p)
}

// EnsureTopics creates topics that do not exist yet with c.Partitions and c.ReplicationFactor.
// Existing topics are left as they are (their partition count is reported, not changed).
func EnsureTopics(ctx context.Context, c Config, log *slog.Logger, topics ...string) error {
	cl, err := kgo.NewClient(c.Options()...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	parts, rf := c.Partitions, c.ReplicationFactor
	if parts <= 0 {
		parts = 3
	}
	if rf <= 0 {
		rf = 1
	}
	// The broker may still be starting; retry transient failures for a while.
	var lastErr error
	for attempt := 0; attempt < 30; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(lastErr, ctx.Err())
			case <-time.After(time.Second):
			}
		}
		resp, err := adm.CreateTopics(ctx, parts, rf, nil, topics...)
		if err != nil {
			lastErr = fmt.Errorf("create topics: %w", err)
			continue
		}
		lastErr = nil
		for _, r := range resp.Sorted() {
			switch {
			case r.Err == nil:
				log.Info("created topic", "topic", r.Topic, "partitions", parts, "replicationFactor", rf)
			case errors.Is(r.Err, kerr.TopicAlreadyExists):
			default:
				lastErr = fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
			}
		}
		if lastErr == nil {
			return nil
		}
	}
	return lastErr
}

// Retentions returns how long each topic keeps records (retention.ms); a negative duration means
// forever.
func Retentions(ctx context.Context, cl *kgo.Client, topics ...string) (map[string]time.Duration, error) {
	rs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describe topics: %w", err)
	}
	out := map[string]time.Duration{}
	for _, r := range rs {
		if r.Err != nil {
			return nil, fmt.Errorf("describe topic %s: %w", r.Name, r.Err)
		}
		for _, c := range r.Configs {
			if c.Key != "retention.ms" || c.Value == nil {
				continue
			}
			ms, err := strconv.ParseInt(*c.Value, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("topic %s: retention.ms %q: %w", r.Name, *c.Value, err)
			}
			out[r.Name] = time.Duration(ms) * time.Millisecond
		}
	}
	return out, nil
}

// Check is a health check: a metadata round trip that reports the brokers seen.
func Check(cl *kgo.Client) func(ctx context.Context) (map[string]any, error) {
	adm := kadm.NewClient(cl)
	return func(ctx context.Context) (map[string]any, error) {
		m, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return nil, err
		}
		return map[string]any{"brokers": len(m.Brokers), "cluster": m.Cluster}, nil
	}
}
