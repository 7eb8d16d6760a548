package kafka_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestRunnerContinuesTheProducersTrace: records produced inside three traces, one of them failing
// for good and one undecodable, are consumed with tracing on. Each record's process span continues
// its producer's trace (publish → process, one span per record from fetch to done, marked when the
// worker took it), the events handed to the handler carry that
// process span (what they cause is its child), a batch's shared span hangs under its first
// record and links the others, and a dead-lettered record's span is an error whose DLQ write is its
// child.
func TestRunnerContinuesTheProducersTrace(t *testing.T) {
	h := newHarness(t, 1)
	ctx := testkit.Context(t, 90*time.Second)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracer := kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(obs.Propagator()))

	// The producer: a client with the same plugin, each record produced inside its own root span.
	prod := testkit.Client(t, kgo.WithHooks(tracer))
	roots := map[string]trace.SpanContext{}
	for _, id := range []string{"order-a", "order-b", "bad-order", "poison"} {
		rctx, root := tp.Tracer("test").Start(ctx, "place "+id)
		value := h.envelope(id, 1)
		if id == "poison" {
			value = []byte("not an envelope")
		}
		if err := prod.ProduceSync(rctx, &kgo.Record{Topic: h.src, Key: []byte(id), Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		root.End()
		roots[id] = root.SpanContext()
	}

	// A record of an unsampled trace (from a producer without tracing hooks): passed on as it
	// came, no span made for it.
	const unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
	if err := h.prod.ProduceSync(ctx, &kgo.Record{Topic: h.src, Key: []byte("order-u"), Value: h.envelope("order-u", 1),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(unsampled)}, {Key: "tracestate", Value: []byte("v=1")}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	type call struct {
		span  trace.Span
		trace []event.Trace
		ids   []string
	}
	var mu sync.Mutex
	var calls []call
	h.batchSize, h.tracer = 10, tracer
	h.handler = func(ctx context.Context, es []event.Envelope) error {
		c := call{span: trace.SpanFromContext(ctx)}
		for _, e := range es {
			c.trace, c.ids = append(c.trace, e.Trace), append(c.ids, e.OrderID)
		}
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		for _, e := range es {
			if e.OrderID == "bad-order" {
				return errors.New("boom")
			}
		}
		return nil
	}
	h.start(nil, 2)
	testkit.Eventually(t, 30*time.Second, "all five records committed", func() bool { return h.committed(ctx) == 5 })
	_ = tp.ForceFlush(ctx)

	spans := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.SpanContext().SpanID()] = s
	}
	// chain returns the names from s up to the root of its trace.
	chain := func(s sdktrace.ReadOnlySpan) []string {
		var names []string
		for s != nil {
			names = append(names, s.Name())
			s = spans[s.Parent().SpanID()]
		}
		return names
	}
	process := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.Name() == h.src+" process" {
			for id, root := range roots {
				if s.SpanContext().TraceID() == root.TraceID() {
					process[id] = s
				}
			}
		}
	}
	for id := range roots {
		s := process[id]
		if s == nil {
			t.Fatalf("no process span in %s's trace; spans: %v", id, names(spans))
		}
		want := []string{h.src + " process", h.src + " publish", "place " + id}
		if got := chain(s); !slices.Equal(got, want) {
			t.Errorf("%s: span chain %v, want %v", id, got, want)
		}
		if ev := s.Events(); len(ev) == 0 || ev[0].Name != "handling" || ev[0].Time.Before(s.StartTime()) {
			t.Errorf("%s: process span events %v, want \"handling\" first, after the span's start", id, ev)
		}
	}
	for _, id := range []string{"bad-order", "poison"} {
		if s := process[id]; s.Status().Code != codes.Error {
			t.Errorf("%s's process span status %v, want an error", id, s.Status())
		}
		var dlq sdktrace.ReadOnlySpan
		for _, s := range spans {
			if s.Name() == h.dlq+" publish" && s.Parent().SpanID() == process[id].SpanContext().SpanID() {
				dlq = s
			}
		}
		if dlq == nil {
			t.Errorf("%s: no DLQ publish span under its process span", id)
		}
	}
	for _, id := range []string{"order-a", "order-b"} {
		if s := process[id]; s.Status().Code == codes.Error {
			t.Errorf("%s's process span failed: %v", id, s.Status())
		}
	}

	mu.Lock()
	defer mu.Unlock()
	batches := 0
	for _, s := range spans {
		if s.SpanContext().TraceID().String() == "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("span %q recorded for an unsampled record", s.Name())
		}
	}
	for _, c := range calls {
		for i, tc := range c.trace {
			if c.ids[i] == "order-u" {
				if tc != (event.Trace{Parent: unsampled, State: "v=1"}) {
					t.Errorf("unsampled record handed over with %+v, want its headers as they came", tc)
				}
				continue
			}
			sc := trace.SpanContextFromContext(obs.WithTrace(context.Background(), tc.Parent, tc.State))
			if p := process[c.ids[i]]; p == nil || sc.SpanID() != p.SpanContext().SpanID() || sc.TraceID() != roots[c.ids[i]].TraceID() {
				t.Errorf("%s handed over with trace %+v, not its process span", c.ids[i], tc)
			}
		}
		if len(c.ids) == 1 && c.ids[0] == "order-u" {
			continue
		}
		if len(c.ids) == 1 {
			if c.span.SpanContext().SpanID() != process[c.ids[0]].SpanContext().SpanID() {
				t.Errorf("single %s handled outside its process span", c.ids[0])
			}
			continue
		}
		batches++
		var recorded []string // the batch's records with a process span, in order
		for _, id := range c.ids {
			if process[id] != nil {
				recorded = append(recorded, id)
			}
		}
		s := spans[c.span.SpanContext().SpanID()]
		if s == nil || s.Parent().SpanID() != process[recorded[0]].SpanContext().SpanID() || len(s.Links()) != len(recorded)-1 {
			t.Errorf("batch %v: span %v is not the first recorded record's child linking the others", c.ids, s)
		}
	}
	if batches == 0 {
		t.Errorf("no handler call saw a batch (calls: %d): the batch span was not exercised", len(calls))
	}
}

func names(spans map[trace.SpanID]sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}
