package obs

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/platform/config"
)

// TraceConfig is read from the standard OpenTelemetry variables (LoadTraceConfig). Tracing is off
// unless an exporter is configured: off, no span is created and no trace context is stored or sent.
type TraceConfig struct {
	Endpoint   string            // OTLP/HTTP traces URL; "" = tracing off
	Headers    map[string]string // sent with every export (authentication)
	Sampler    string
	SamplerArg float64
	BatchDelay time.Duration // longest a finished span waits to be exported
}

// On reports whether traces are exported.
func (c TraceConfig) On() bool { return c.Endpoint != "" }

// Samplers are the values of OTEL_TRACES_SAMPLER understood here (the specification's, without the
// Jaeger remote ones).
var Samplers = []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// LoadTraceConfig reads the OTEL_* variables.
func LoadTraceConfig(e *config.Env) TraceConfig {
	disabled := e.Bool("OTEL_SDK_DISABLED", false, "true turns tracing off whatever else is set.")
	exporter := e.String("OTEL_TRACES_EXPORTER", "", "Trace exporter: otlp (OTLP over HTTP/protobuf, e.g. to Jaeger or an OpenTelemetry Collector) or none. Empty: otlp when an OTLP endpoint is set, else none (tracing off: no span is made, no trace context stored or sent).")
	base := e.String("OTEL_EXPORTER_OTLP_ENDPOINT", "", "OTLP/HTTP base URL; traces go to <URL>/v1/traces (Jaeger: http://127.0.0.1:4318).")
	traces := e.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "OTLP/HTTP traces URL, used as given (overrides OTEL_EXPORTER_OTLP_ENDPOINT).")
	protocol := e.String("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTLP protocol; only http/protobuf is built in.")
	headers := e.Secret("OTEL_EXPORTER_OTLP_HEADERS", "", "Headers sent with every export, key=value pairs separated by commas, values URL-encoded (e.g. authorization=Bearer%20abc).")
	c := TraceConfig{
		Sampler: e.String("OTEL_TRACES_SAMPLER", "parentbased_always_on", "Sampler: "+strings.Join(Samplers, ", ")+". parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG=0.1 keeps a tenth of the orders, whole: every service follows the decision taken where the order entered."),
	}
	arg := e.String("OTEL_TRACES_SAMPLER_ARG", "1", "Fraction of traces kept by the traceidratio samplers, 0 to 1.")
	ratio, err := strconv.ParseFloat(arg, 64)
	e.Check(err == nil && ratio >= 0 && ratio <= 1, "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, not %q", arg)
	c.SamplerArg = ratio
	delay := e.Int("OTEL_BSP_SCHEDULE_DELAY", 5000, "Milliseconds a finished span waits at most before it is exported (with others).")
	e.Check(delay > 0, "OTEL_BSP_SCHEDULE_DELAY must be a positive number of milliseconds")
	c.BatchDelay = time.Duration(delay) * time.Millisecond
	e.Check(slices.Contains(Samplers, c.Sampler), "OTEL_TRACES_SAMPLER must be one of %s, not %q", strings.Join(Samplers, ", "), c.Sampler)
	e.Check(exporter == "" || exporter == "none" || exporter == "otlp", "OTEL_TRACES_EXPORTER must be otlp or none, not %q", exporter)
	e.Check(protocol == "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not built in: use http/protobuf (Jaeger and the Collector accept it on port 4318)", protocol)
	switch {
	case traces != "":
		c.Endpoint = traces
	case base != "":
		c.Endpoint = strings.TrimSuffix(base, "/") + "/v1/traces"
	}
	if disabled || exporter == "none" {
		c.Endpoint = ""
	}
	e.Check(exporter != "otlp" || disabled || c.Endpoint != "", "OTEL_TRACES_EXPORTER=otlp needs OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		e.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", "the OTLP traces endpoint must be an http or https URL, not %q", c.Endpoint)
	}
	c.Headers = map[string]string{}
	for _, kv := range strings.Split(headers, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if strings.TrimSpace(kv) == "" {
			continue
		}
		v, err := url.QueryUnescape(strings.TrimSpace(v))
		e.Check(ok && strings.TrimSpace(k) != "" && err == nil, "OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs separated by commas")
		c.Headers[strings.TrimSpace(k)] = v
	}
	return c
}

// Tracing is a service's tracer provider; nil means tracing is off, and every user checks for nil
// rather than calling a no-op tracer, so off costs nothing.
type Tracing struct {
	Provider *sdktrace.TracerProvider
}

// NewTracing returns the service's tracing, or nil when c is off. Spans are exported in batches in
// the background; Shutdown flushes them.
func NewTracing(service, version string, c TraceConfig) (*Tracing, error) {
	if !c.On() {
		return nil, nil
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("OTLP endpoint: %w", err)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(c.Endpoint), otlptracehttp.WithTimeout(10 * time.Second)}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
	}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("service.version", version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(c.BatchDelay)), sdktrace.WithResource(res),
		sdktrace.WithSampler(entryPoints{sampler(c.Sampler, c.SamplerArg)}))
	return &Tracing{Provider: tp}, nil
}

// Tracer returns a tracer named for the instrumented package.
func (t *Tracing) Tracer(name string) trace.Tracer { return t.Provider.Tracer(name) }

// Shutdown exports what is buffered and stops the provider.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.Provider.Shutdown(ctx) }

func sampler(name string, ratio float64) sdktrace.Sampler {
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// entryPoints starts traces only where work enters the system: a request (server), a record
// published or received without a trace context (producer, consumer). A database or Redis call with
// no span around it (health checks, the relay's bookkeeping, purges) is not worth a trace of its own.
type entryPoints struct{ next sdktrace.Sampler }

func (s entryPoints) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if !trace.SpanContextFromContext(p.ParentContext).IsValid() && (p.Kind == trace.SpanKindClient || p.Kind == trace.SpanKindInternal) {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return s.next.ShouldSample(p)
}

func (s entryPoints) Description() string { return "EntryPoints{" + s.next.Description() + "}" }

// Propagator is the W3C trace context, the only propagation format used (DESIGN.md §5).
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// TraceOf returns ctx's span context as W3C traceparent and tracestate, or "" when ctx carries none
// (tracing off), for storing with an event.
func TraceOf(ctx context.Context) (parent, state string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	c := propagation.MapCarrier{}
	Propagator().Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// Sampled reports whether a W3C traceparent ("00-<trace id>-<span id>-<flags>") says its trace is
// recorded, without parsing the rest: an unsampled record or row is passed on as it came.
func Sampled(traceparent string) bool {
	if len(traceparent) != 55 {
		return false
	}
	f := traceparent[54]
	return f == '1' || f == '3' || f == '5' || f == '7' || f == '9' || f == 'b' || f == 'd' || f == 'f'
}

// WithTrace returns ctx carrying the remote span context stored by TraceOf.
func WithTrace(ctx context.Context, parent, state string) context.Context {
	if parent == "" {
		return ctx
	}
	return Propagator().Extract(ctx, propagation.MapCarrier{"traceparent": parent, "tracestate": state})
}

// OrderIDKey is the span attribute naming the order a span worked on, so a trace backend finds an
// order's trace by it.
const OrderIDKey = "orderflow.order_id"

// TagOrder names the order on ctx's span, when one is recorded.
func TagOrder(ctx context.Context, orderID string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String(OrderIDKey, orderID))
	}
}
