package pg

import (
	"context"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"
)

// RecordedOnly wraps the pgx OpenTelemetry tracer so that it runs only below a recorded span: a
// statement of an unsampled order (or of no trace) costs one context lookup instead of the
// tracer's bookkeeping (a context value and a clock read per statement). A batch is one span.
func RecordedOnly(t *otelpgx.Tracer) pgx.QueryTracer { return recordedOnly{t} }

type recordedOnly struct{ t *otelpgx.Tracer }

func recorded(ctx context.Context) bool { return trace.SpanFromContext(ctx).IsRecording() }

// Each End or batch statement sees the context its Start returned: the statement's own span when
// Start traced it, else the unrecorded parent, so the same test keeps Start and End paired.

func (r recordedOnly) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !recorded(ctx) {
		return ctx
	}
	return r.t.TraceQueryStart(ctx, c, d)
}

func (r recordedOnly) TraceQueryEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	if recorded(ctx) {
		r.t.TraceQueryEnd(ctx, c, d)
	}
}

func (r recordedOnly) TraceBatchStart(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if !recorded(ctx) {
		return ctx
	}
	return r.t.TraceBatchStart(ctx, c, d)
}

// TraceBatchQuery makes no span: the statements of a batch are pipelined, so a span per statement
// has no duration of its own (they showed 0.00 ms) and made a third of an order's spans, all
// exported. The batch's span (its size, its time, its error) stays.
func (recordedOnly) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r recordedOnly) TraceBatchEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchEndData) {
	if recorded(ctx) {
		r.t.TraceBatchEnd(ctx, c, d)
	}
}

func (r recordedOnly) TracePrepareStart(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	if !recorded(ctx) {
		return ctx
	}
	return r.t.TracePrepareStart(ctx, c, d)
}

func (r recordedOnly) TracePrepareEnd(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareEndData) {
	if recorded(ctx) {
		r.t.TracePrepareEnd(ctx, c, d)
	}
}

func (r recordedOnly) TraceCopyFromStart(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	if !recorded(ctx) {
		return ctx
	}
	return r.t.TraceCopyFromStart(ctx, c, d)
}

func (r recordedOnly) TraceCopyFromEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromEndData) {
	if recorded(ctx) {
		r.t.TraceCopyFromEnd(ctx, c, d)
	}
}
