package obs

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/platform/config"
)

func loadTrace(env map[string]string) (TraceConfig, error) {
	e := config.New(func(k string) string { return env[k] })
	c := LoadTraceConfig(e)
	return c, e.Err()
}

// TestTraceConfigFromTheStandardVariables: off unless an exporter is configured; the endpoint
// variables, OTEL_SDK_DISABLED and none behave as the OpenTelemetry specification says, and what
// is not built in is refused with the reason.
func TestTraceConfigFromTheStandardVariables(t *testing.T) {
	for _, tc := range []struct {
		env      map[string]string
		endpoint string
		err      string
	}{
		{env: nil, endpoint: ""},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}, endpoint: "http://127.0.0.1:4318/v1/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/traces"}, endpoint: "https://b/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"}, endpoint: ""},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "none"}, endpoint: ""},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, err: "needs OTEL_EXPORTER_OTLP_ENDPOINT"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "otlp or none"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: "use http/protobuf"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, err: "http or https URL"},
		{env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, err: "OTEL_TRACES_SAMPLER must be"},
		{env: map[string]string{"OTEL_TRACES_SAMPLER_ARG": "1.5"}, err: "from 0 to 1"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, err: "key=value"},
	} {
		c, err := loadTrace(tc.env)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: error %v, want one saying %q", tc.env, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.err == "" && c.Endpoint != tc.endpoint:
			t.Errorf("%v: endpoint %q, want %q", tc.env, c.Endpoint, tc.endpoint)
		}
	}
	c, err := loadTrace(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
		"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc, x-tenant = t1",
		"OTEL_TRACES_SAMPLER":        "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"})
	if err != nil || c.Headers["authorization"] != "Bearer abc" || c.Headers["x-tenant"] != "t1" || c.SamplerArg != 0.1 || !c.On() {
		t.Fatalf("%+v, %v", c, err)
	}
	if tr, err := NewTracing("svc", "v", TraceConfig{}); tr != nil || err != nil {
		t.Fatalf("tracing off gave %v, %v", tr, err)
	}
}

// TestTracesStartOnlyAtEntryPoints: with everything sampled, a database call outside any span
// starts no trace, a request does, and a call inside the request is part of its trace; a
// parent-based ratio of 0 follows a sampled parent and samples no new root.
func TestTracesStartOnlyAtEntryPoints(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(entryPoints{sampler("parentbased_always_on", 1)}))
	tr := tp.Tracer("test")
	_, orphan := tr.Start(context.Background(), "SELECT", trace.WithSpanKind(trace.SpanKindClient))
	orphan.End()
	ctx, req := tr.Start(context.Background(), "POST /api/orders", trace.WithSpanKind(trace.SpanKindServer))
	_, q := tr.Start(ctx, "INSERT", trace.WithSpanKind(trace.SpanKindClient))
	q.End()
	req.End()
	if orphan.SpanContext().IsSampled() || !req.SpanContext().IsSampled() || !q.SpanContext().IsSampled() {
		t.Fatalf("sampled: orphan %v, request %v, its query %v", orphan.SpanContext().IsSampled(), req.SpanContext().IsSampled(), q.SpanContext().IsSampled())
	}
	if n := len(rec.Ended()); n != 2 {
		t.Fatalf("%d spans recorded, want the request and its query", n)
	}

	none := sdktrace.NewTracerProvider(sdktrace.WithSampler(entryPoints{sampler("parentbased_traceidratio", 0)})).Tracer("test")
	_, root := none.Start(context.Background(), "POST", trace.WithSpanKind(trace.SpanKindServer))
	_, child := none.Start(ctx, "consume", trace.WithSpanKind(trace.SpanKindConsumer))
	if root.SpanContext().IsSampled() || !child.SpanContext().IsSampled() {
		t.Fatalf("ratio 0: root sampled %v, child of a sampled parent %v", root.SpanContext().IsSampled(), child.SpanContext().IsSampled())
	}
}

func TestSampledReadsTheFlags(t *testing.T) {
	for p, want := range map[string]bool{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01": true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00": false,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03": true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02": false,
		"": false, "garbage": false,
	} {
		if Sampled(p) != want {
			t.Errorf("Sampled(%q) = %v", p, !want)
		}
	}
}

// TestTraceContextRoundTrip: what TraceOf stores, WithTrace restores; no span, nothing stored.
func TestTraceContextRoundTrip(t *testing.T) {
	if p, s := TraceOf(context.Background()); p != "" || s != "" {
		t.Fatalf("no span gave %q %q", p, s)
	}
	ctx, span := sdktrace.NewTracerProvider().Tracer("t").Start(context.Background(), "x")
	defer span.End()
	p, s := TraceOf(ctx)
	got := trace.SpanContextFromContext(WithTrace(context.Background(), p, s))
	if !got.IsRemote() || got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() || !got.IsSampled() {
		t.Fatalf("%q restored as %+v", p, got)
	}
}
