package query

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/tracestore"
)

// TestOrderTraceAsWaterfall exports spans of two services with the OpenTelemetry SDK over OTLP to
// the trace store orderflow dev runs, then reads GET /api/orders/{id}/trace: the order's placement
// trace (not the later one also naming the order), depth first with children by start, times
// relative to the first span, the failed span marked; unknown orders and no backend answer 404.
func TestOrderTraceAsWaterfall(t *testing.T) {
	store := httptest.NewServer(tracestore.New(100).Handler())
	t.Cleanup(store.Close)
	ctx := context.Background()
	provider := func(service string) *sdktrace.TracerProvider {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(store.URL+"/v1/traces"), otlptracehttp.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	}
	orders, inventory := provider("order-service"), provider("inventory-service")
	const id = "order-7"
	t0 := time.Now().Add(-time.Minute)
	at := func(ms int) trace.SpanStartEventOption {
		return trace.WithTimestamp(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	end := func(ms int) trace.SpanEndOption {
		return trace.WithTimestamp(t0.Add(time.Duration(ms) * time.Millisecond))
	}

	rctx, post := orders.Tracer("t").Start(ctx, "POST /api/orders", at(0), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String(obs.OrderIDKey, id)))
	_, insert := orders.Tracer("t").Start(rctx, "INSERT", at(2), trace.WithSpanKind(trace.SpanKindClient))
	insert.End(end(5))
	pctx, publish := orders.Tracer("t").Start(rctx, "raw.order-events publish", at(6), trace.WithSpanKind(trace.SpanKindProducer))
	publish.End(end(8))
	post.End(end(9))
	// inventory continues the trace from the record's headers
	remote := obs.WithTrace(ctx, func() string { p, _ := obs.TraceOf(pctx); return p }(), "")
	_, process := inventory.Tracer("t").Start(remote, "raw.order-events process", at(12), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attribute.String(obs.OrderIDKey, id)))
	process.SetStatus(codes.Error, "boom")
	process.End(end(20))
	// a later trace naming the order (a cancellation request) is not the placement's
	_, later := orders.Tracer("t").Start(ctx, "POST /api/orders/{orderId}/cancel", at(30), trace.WithAttributes(attribute.String(obs.OrderIDKey, id)))
	later.End(end(31))

	a := testAPI(NewMemory(), NewHub())
	a.traces = newTraces(store.URL)
	mux := httpx.NewMux(httpx.GuardConfig{})
	a.routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var got OrderTrace
	if code := getJSON(t, srv.URL+"/api/orders/"+id+"/trace", &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	want := []TraceSpan{
		{Service: "order-service", Name: "POST /api/orders", StartMs: 0, DurationMs: 9, Depth: 0, Kind: "server"},
		{Service: "order-service", Name: "INSERT", StartMs: 2, DurationMs: 3, Depth: 1, Kind: "client"},
		{Service: "order-service", Name: "raw.order-events publish", StartMs: 6, DurationMs: 2, Depth: 1, Kind: "producer"},
		{Service: "inventory-service", Name: "raw.order-events process", StartMs: 12, DurationMs: 8, Depth: 2, Kind: "consumer", Error: true},
	}
	if got.TraceID != post.SpanContext().TraceID().String() || len(got.Spans) != len(want) {
		t.Fatalf("trace %s with %d spans, want %s with %d: %+v", got.TraceID, len(got.Spans), post.SpanContext().TraceID(), len(want), got.Spans)
	}
	for i, w := range want {
		if got.Spans[i] != w {
			t.Errorf("row %d: %+v, want %+v", i, got.Spans[i], w)
		}
	}
	var p httpx.Problem
	if code := getJSON(t, srv.URL+"/api/orders/unknown-order/trace", &p); code != http.StatusNotFound || p.Detail == "" {
		t.Errorf("unknown order: %d %+v", code, p)
	}
	a.traces = nil
	if code := getJSON(t, srv.URL+"/api/orders/"+id+"/trace", &p); code != http.StatusNotFound || p.Detail != "no trace backend is configured (QUERY_TRACES_URL)" {
		t.Errorf("no backend: %d %+v", code, p)
	}
	a.traces = newTraces("http://127.0.0.1:1")
	if code := getJSON(t, srv.URL+"/api/orders/"+id+"/trace", &p); code != http.StatusServiceUnavailable {
		t.Errorf("backend down: %d %+v", code, p)
	}
}
