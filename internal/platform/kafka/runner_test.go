package kafka_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/testkit"
)

type harness struct {
	t        *testing.T
	src, dlq string
	group    string
	reg      *prometheus.Registry
	metrics  *kafka.RunnerMetrics
	prod     *kgo.Client
	// batchSize is the runner's BatchSize (default 1: the handler sees one event per call, so a
	// failing event is not handled again as part of a split batch).
	batchSize int
	lagEvery  time.Duration // the runner's LagEvery (0: its default)
	tracer    *kotel.Tracer // the runner's tracing (nil: off)
	handler   kafka.Handler // the runner's handler, instead of start's per-event one
	log       io.Writer     // the runner's log (nil: discarded)
}

// logBuffer is a log destination tests read while the runner writes it.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHarness(t *testing.T, partitions int32) *harness {
	testkit.Integration(t)
	topics := testkit.NewTopics(t, partitions, "src", "dlq")
	reg := prometheus.NewRegistry()
	return &harness{t: t, src: topics[0], dlq: topics[1], group: testkit.Name("group"), reg: reg,
		metrics: kafka.NewRunnerMetrics(reg), prod: testkit.Client(t)}
}

func (h *harness) envelope(orderID string, seq int) []byte {
	e, err := event.Factory{Producer: "test"}.New(event.OrderCreated, orderID, map[string]int{"seq": seq})
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := e.Encode()
	return b
}

func (h *harness) produce(ctx context.Context, key string, value []byte) {
	h.t.Helper()
	if err := h.prod.ProduceSync(ctx, &kgo.Record{Topic: h.src, Key: []byte(key), Value: value,
		Headers: []kgo.RecordHeader{{Key: "eventType", Value: []byte("order.created")}}}).FirstErr(); err != nil {
		h.t.Fatalf("produce: %v", err)
	}
}

// start runs a runner applying handler to each event in order until the returned stop function is
// called; stop waits for Run to return.
func (h *harness) start(handler func(context.Context, event.Envelope) error, maxAttempts int) (stop func()) {
	h.t.Helper()
	each := func(ctx context.Context, es []event.Envelope) error {
		for _, e := range es {
			if err := handler(ctx, e); err != nil {
				return err
			}
		}
		return nil
	}
	if h.handler != nil {
		each = h.handler
	}
	kc := testkit.KafkaConfig()
	kc.Tracer = h.tracer
	r, err := kafka.NewRunner(kc, kafka.RunnerConfig{
		Group: h.group, Topics: []string{h.src}, Handler: each, MaxAttempts: maxAttempts, BatchSize: max(h.batchSize, 1),
		Backoff:  kafka.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		DLQTopic: func(string) string { return h.dlq }, LagEvery: h.lagEvery,
		Log: slog.New(slog.NewTextHandler(cmp.Or[io.Writer](h.log, io.Discard), nil)), Metrics: h.metrics,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				h.t.Error("runner did not stop within 30s")
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

// committed returns the group's committed offset sum for the source topic.
func (h *harness) committed(ctx context.Context) int64 {
	adm := kadm.NewClient(testkit.Client(h.t))
	offs, err := adm.FetchOffsets(ctx, h.group)
	if err != nil {
		return -1
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == h.src {
			sum += o.At
		}
	})
	return sum
}

func TestFailTwiceThenSucceed(t *testing.T) {
	h := newHarness(t, 1)
	ctx := testkit.Context(t, 60*time.Second)
	var calls, successes atomic.Int32
	h.produce(ctx, "o1", h.envelope("o1", 1))
	h.start(func(ctx context.Context, e event.Envelope) error {
		if calls.Add(1) <= 2 {
			return errors.New("transient")
		}
		successes.Add(1)
		return nil
	}, 5)
	testkit.Eventually(t, 30*time.Second, "offset committed after success", func() bool { return h.committed(ctx) == 1 })
	if successes.Load() != 1 || calls.Load() != 3 {
		t.Fatalf("calls %d successes %d", calls.Load(), successes.Load())
	}
	if got := testutil.ToFloat64(h.metricVec("kafka_consumer_retries_total")); got != 2 {
		t.Fatalf("retries metric %v, want 2", got)
	}
}

func (h *harness) metricVec(name string) prometheus.Collector {
	// Collect the whole registry and sum the named metric (labels vary by test).
	return sumCollector{h.reg, name}
}

type sumCollector struct {
	reg  *prometheus.Registry
	name string
}

func (s sumCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- prometheus.NewDesc(s.name+"_sum", "sum", nil, nil)
}

func (s sumCollector) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := s.reg.Gather()
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != s.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.Counter != nil {
				v += m.Counter.GetValue()
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(s.name+"_sum", "sum", nil, nil), prometheus.CounterValue, v)
}

func TestAlwaysFailingRecordIsDeadLetteredWithHeadersAndPartitionMovesOn(t *testing.T) {
	h := newHarness(t, 1)
	ctx := testkit.Context(t, 90*time.Second)
	bad := h.envelope("bad-order", 1)
	h.produce(ctx, "bad-order", bad)
	for i := 2; i <= 4; i++ {
		h.produce(ctx, "good-order", h.envelope("good-order", i))
	}
	var good atomic.Int32
	h.start(func(ctx context.Context, e event.Envelope) error {
		if e.OrderID == "bad-order" {
			return errors.New("boom: cannot handle")
		}
		good.Add(1)
		return nil
	}, 3)
	testkit.Eventually(t, 30*time.Second, "later records processed", func() bool { return good.Load() == 3 })
	testkit.Eventually(t, 30*time.Second, "all offsets committed", func() bool { return h.committed(ctx) == 4 })

	// An independent client reads the dead-lettered record with every header.
	out, err := exec.CommandContext(ctx, "kcat", "-b", "127.0.0.1:9092", "-C", "-t", h.dlq, "-o", "beginning",
		"-c", "1", "-e", "-f", "%k\n%h\n%s").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, out)
	}
	parts := strings.SplitN(string(out), "\n", 3)
	if len(parts) != 3 || parts[0] != "bad-order" || strings.TrimSpace(parts[2]) != string(bad) {
		t.Fatalf("dlq record not the original: %q", out)
	}
	headers := parts[1]
	for _, want := range []string{"eventType=order.created", "x-retry-count=2", "x-original-topic=" + h.src,
		"x-original-partition=0", "x-original-offset=0", "x-consumer-group=" + h.group, "x-error=boom: cannot handle", "x-failed-at="} {
		if !strings.Contains(headers, want) {
			t.Errorf("headers %q lack %q", headers, want)
		}
	}
}

func TestPoisonGoesToDLQWithoutRetries(t *testing.T) {
	h := newHarness(t, 1)
	ctx := testkit.Context(t, 60*time.Second)
	h.produce(ctx, "k", []byte("this is not json"))
	h.produce(ctx, "k", []byte(`{"eventType":"order.created"}`)) // JSON, but no eventId/orderId
	var calls atomic.Int32
	h.start(func(context.Context, event.Envelope) error { calls.Add(1); return nil }, 5)
	testkit.Eventually(t, 30*time.Second, "both poison records committed", func() bool { return h.committed(ctx) == 2 })
	if calls.Load() != 0 {
		t.Fatalf("handler called %d times for poison", calls.Load())
	}
	if got := testutil.ToFloat64(h.metricVec("kafka_consumer_retries_total")); got != 0 {
		t.Fatalf("poison was retried %v times", got)
	}
	cl := testkit.Client(t, kgo.ConsumeTopics(h.dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var recs []*kgo.Record
	for len(recs) < 2 {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("dlq records missing")
		}
		recs = append(recs, f.Records()...)
	}
	for _, r := range recs {
		var retry, errh string
		for _, hd := range r.Headers {
			switch hd.Key {
			case kafka.HeaderRetryCount:
				retry = string(hd.Value)
			case kafka.HeaderError:
				errh = string(hd.Value)
			}
		}
		if retry != "0" || !strings.Contains(errh, "invalid event") {
			t.Errorf("poison headers retry=%q error=%q", retry, errh)
		}
	}
}

func TestPermanentErrorSkipsRetries(t *testing.T) {
	h := newHarness(t, 1)
	ctx := testkit.Context(t, 60*time.Second)
	h.produce(ctx, "o", h.envelope("o", 1))
	var calls atomic.Int32
	h.start(func(context.Context, event.Envelope) error {
		calls.Add(1)
		return kafka.Permanent(errors.New("validation failed"))
	}, 5)
	testkit.Eventually(t, 30*time.Second, "dead-lettered and committed", func() bool { return h.committed(ctx) == 1 })
	if calls.Load() != 1 {
		t.Fatalf("permanent error attempted %d times", calls.Load())
	}
}

func TestUnavailableRetriesBeyondMaxAttempts(t *testing.T) {
	h := newHarness(t, 1)
	ctx := testkit.Context(t, 60*time.Second)
	h.produce(ctx, "o", h.envelope("o", 1))
	var calls atomic.Int32
	h.start(func(context.Context, event.Envelope) error {
		if calls.Add(1) < 8 {
			return kafka.Unavailable(errors.New("database down"))
		}
		return nil
	}, 3)
	testkit.Eventually(t, 30*time.Second, "processed after the outage", func() bool { return h.committed(ctx) == 1 })
	if n := testutil.ToFloat64(h.metricVec("kafka_consumer_dlq_total")); n != 0 {
		t.Fatalf("outage dead-lettered %v records", n)
	}
}

func TestPartitionOrderAndGracefulShutdownCommits(t *testing.T) {
	h := newHarness(t, 3)
	ctx := testkit.Context(t, 90*time.Second)
	const orders, perOrder = 10, 20
	for i := 0; i < perOrder; i++ {
		for o := 0; o < orders; o++ {
			id := fmt.Sprintf("order-%d", o)
			h.produce(ctx, id, h.envelope(id, i))
		}
	}
	h.batchSize = 7 // batches of several orders' events, never a failure: order must hold across them
	var mu sync.Mutex
	seen := map[string][]int{}
	handler := func(_ context.Context, e event.Envelope) error {
		var p struct{ Seq int }
		_ = json.Unmarshal(e.Payload, &p)
		mu.Lock()
		seen[e.OrderID] = append(seen[e.OrderID], p.Seq)
		mu.Unlock()
		return nil
	}
	stop := h.start(handler, 3)
	testkit.Eventually(t, 60*time.Second, "all records handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range seen {
			n += len(s)
		}
		return n == orders*perOrder
	})
	stop()
	if got := h.committed(ctx); got != orders*perOrder {
		t.Fatalf("after graceful stop committed %d, want %d", got, orders*perOrder)
	}
	for id, s := range seen {
		for i := range s {
			if s[i] != i {
				t.Fatalf("%s handled out of order: %v", id, s)
			}
		}
	}
	// A restart in the same group sees nothing again.
	var again atomic.Int32
	h.start(func(context.Context, event.Envelope) error { again.Add(1); return nil }, 3)
	h.produce(ctx, "order-x", h.envelope("order-x", 0)) // a marker proving the restarted runner consumes
	// Once every partition's committed offset is at its end, anything redelivered has been handled.
	testkit.Eventually(t, 30*time.Second, "marker committed", func() bool { return h.committed(ctx) == orders*perOrder+1 })
	if again.Load() != 1 {
		t.Fatalf("restart redelivered %d acknowledged records", again.Load()-1)
	}
}

// TestFailedBatchIsSplitDownToTheBadEvent: a batch that fails is handed to the handler again in
// halves, down to the single bad event, which is dead-lettered by its error's class; every other event
// is acknowledged once, in order, and the poison record goes to the DLQ without reaching the handler.
func TestFailedBatchIsSplitDownToTheBadEvent(t *testing.T) {
	h := newHarness(t, 1)
	ctx := testkit.Context(t, 60*time.Second)
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("o%02d", i)
		if i == 25 {
			id = "bad"
		}
		h.produce(ctx, id, h.envelope(id, i))
	}
	h.produce(ctx, "k", []byte("poison"))
	var mu sync.Mutex
	var applied []string
	var sizes []int
	r, err := kafka.NewRunner(testkit.KafkaConfig(), kafka.RunnerConfig{
		Group: h.group, Topics: []string{h.src}, MaxAttempts: 2, BatchSize: 64,
		Backoff:  kafka.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
		DLQTopic: func(string) string { return h.dlq },
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: h.metrics,
		Handler: func(_ context.Context, es []event.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			sizes = append(sizes, len(es))
			for _, e := range es {
				if e.OrderID == "bad" {
					return kafka.Permanent(errors.New("bad")) // all or nothing: nothing of es applied
				}
			}
			for _, e := range es {
				applied = append(applied, e.OrderID)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	testkit.Eventually(t, 30*time.Second, "all committed", func() bool { return h.committed(ctx) == 51 })
	mu.Lock()
	defer mu.Unlock()
	var want []string
	for i := 0; i < 50; i++ {
		if i != 25 {
			want = append(want, fmt.Sprintf("o%02d", i))
		}
	}
	if strings.Join(applied, ",") != strings.Join(want, ",") {
		t.Fatalf("applied %v, want every good event once, in order", applied)
	}
	singles := 0
	for _, n := range sizes {
		if n == 1 {
			singles++
		}
	}
	if singles == 0 || len(sizes) < 3 {
		t.Fatalf("handler calls %v: the failed batch was not split down to the bad event", sizes)
	}
	if n := testutil.ToFloat64(h.metricVec("kafka_consumer_dlq_total")); n != 2 {
		t.Fatalf("dead-lettered %v, want the bad event and the poison record", n)
	}
	if n := testutil.ToFloat64(h.metricVec("kafka_consumer_batch_splits_total")); n < 1 {
		t.Fatal("the split was not counted")
	}
}

// TestLagGrowsWhileAPartitionIsStuck: the lag gauge comes from the broker on a timer, so while the
// handler is stuck on a record the lag of its partition keeps growing as records arrive, and it
// falls back to 0 once the partition moves again.
func TestLagGrowsWhileAPartitionIsStuck(t *testing.T) {
	h := newHarness(t, 1)
	h.lagEvery = 100 * time.Millisecond
	ctx := testkit.Context(t, 60*time.Second)
	release := make(chan struct{})
	var stuck atomic.Bool
	h.start(func(_ context.Context, e event.Envelope) error {
		if e.OrderID == "stuck" {
			stuck.Store(true)
			<-release
		}
		return nil
	}, 3)
	lag := func() float64 {
		return testutil.ToFloat64(h.metrics.Lag().WithLabelValues(h.group, h.src, "0"))
	}
	h.produce(ctx, "first", h.envelope("first", 0))
	testkit.Eventually(t, 30*time.Second, "the first record committed", func() bool { return h.committed(ctx) == 1 })
	h.produce(ctx, "stuck", h.envelope("stuck", 1))
	testkit.Eventually(t, 30*time.Second, "the handler stuck", stuck.Load)
	var seen []float64
	for i := range 3 {
		for j := 0; j < 10; j++ {
			h.produce(ctx, "after", h.envelope("after", 10*i+j))
		}
		want := float64(10*(i+1) + 1)
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("lag %v while stuck", want), func() bool { return lag() == want })
		seen = append(seen, lag())
	}
	close(release)
	testkit.Eventually(t, 30*time.Second, "lag back to 0 once unstuck", func() bool { return lag() == 0 })
	t.Logf("lag while stuck: %v, then 0", seen)
}

// TestDeadLetterWriteRetriesAfterAFailure: the dead-letter topic does not exist when the record
// fails, so the first writes fail; once it exists, a later attempt lands the record (each attempt
// gives the record a fresh context: franz-go keeps the first one, already cancelled) and the
// partition moves on.
func TestDeadLetterWriteRetriesAfterAFailure(t *testing.T) {
	h := newHarness(t, 1)
	h.dlq = testkit.Name("late_dlq")
	ctx := testkit.Context(t, 90*time.Second)
	h.produce(ctx, "bad-order", h.envelope("bad-order", 1))
	h.produce(ctx, "good-order", h.envelope("good-order", 2))
	logs := &logBuffer{}
	h.log = logs
	var good atomic.Int32
	h.start(func(ctx context.Context, e event.Envelope) error {
		if e.OrderID == "bad-order" {
			return kafka.Permanent(errors.New("boom"))
		}
		good.Add(1)
		return nil
	}, 1)
	// The write fails while the topic is missing (the fault really happened: the runner reported a
	// failed write, and nothing was committed).
	testkit.Eventually(t, 60*time.Second, "a failed dead-letter write", func() bool {
		return strings.Contains(logs.String(), "dead-letter write failed")
	})
	if c := h.committed(ctx); c > 0 || good.Load() != 0 {
		t.Fatalf("committed %d, handled %d while the dead-letter topic was missing", c, good.Load())
	}
	adm := kadm.NewClient(testkit.Client(t))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, h.dlq); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "the record dead-lettered and the partition past it", func() bool {
		return h.committed(ctx) == 2 && good.Load() == 1
	})
}
