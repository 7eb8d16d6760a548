// Package obs sets up structured logs and the Prometheus registry every service exposes.
package obs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/lmittmann/tint"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sys/unix"
)

// NewLogger returns a logger carrying the service name. level is debug, info, warn or error;
// format is json (for log pipelines), text (one readable line per record: time, level, service,
// message, fields; coloured on a terminal unless NO_COLOR is set), or auto: text when w is a
// terminal, json otherwise (containers, files, pipes).
func NewLogger(w io.Writer, service, level, format string) *slog.Logger {
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
	tty := isTerminal(w)
	if format == "text" || format == "auto" && tty {
		h := tint.NewTextHandler(w, &tint.Options{Level: l, TimeFormat: "15:04:05.000", NoColor: !tty || os.Getenv("NO_COLOR") != ""})
		// Padded to the longest service name, so messages line up in a column.
		return slog.New(prefixed{h, fmt.Sprintf("%-17s ", service)})
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("service", service)
}

// LogFormats are NewLogger's formats, for validating configuration.
var LogFormats = []string{"auto", "json", "text"}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS) //nolint:gosec // a file descriptor fits an int
	return err == nil
}

// prefixed puts the service name in front of each text message.
type prefixed struct {
	slog.Handler
	prefix string
}

func (p prefixed) Handle(ctx context.Context, r slog.Record) error {
	r.Message = p.prefix + r.Message
	return p.Handler.Handle(ctx, r)
}

func (p prefixed) WithAttrs(as []slog.Attr) slog.Handler {
	return prefixed{p.Handler.WithAttrs(as), p.prefix}
}

func (p prefixed) WithGroup(name string) slog.Handler {
	return prefixed{p.Handler.WithGroup(name), p.prefix}
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
