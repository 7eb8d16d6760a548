// Package obs sets up structured logs and the Prometheus registry every service exposes.
package obs

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewLogger returns a JSON slog logger carrying the service name. level is debug, info, warn or error.
func NewLogger(w io.Writer, service, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("service", service)
}

// NewRegistry returns a registry whose every metric carries application=<service>, with the Go
// runtime and process collectors registered. It returns the Registerer that adds the label and the
// Gatherer that serves /metrics.
func NewRegistry(service string) (prometheus.Registerer, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(prometheus.Labels{"application": service}, reg)
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r, reg
}

type ctxKey struct{}

// WithAttrs stores log attributes (orderId, eventId, ...) in ctx for Logger to pick up.
func WithAttrs(ctx context.Context, attrs ...any) context.Context {
	prev, _ := ctx.Value(ctxKey{}).([]any)
	return context.WithValue(ctx, ctxKey{}, append(append([]any(nil), prev...), attrs...))
}

// Logger returns base with the attributes stored in ctx by WithAttrs.
func Logger(ctx context.Context, base *slog.Logger) *slog.Logger {
	if a, ok := ctx.Value(ctxKey{}).([]any); ok {
		return base.With(a...)
	}
	return base
}
