package pg_test

import (
	"context"
	"testing"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestStatementsAreTracedOnlyBelowARecordedSpan: on a real Postgres, a query and a batch inside a
// recorded span get a span each (the batch one, not one per pipelined statement); the same outside
// any span, or inside an unsampled one, get none.
func TestStatementsAreTracedOnlyBelowARecordedSpan(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c := testkit.NewDatabase(t)
	c.Tracer = pg.RecordedOnly(otelpgx.NewTracer(otelpgx.WithTracerProvider(tp)))
	pool, err := pg.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	work := func(ctx context.Context) {
		var n int
		if err := pool.QueryRow(ctx, `SELECT 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue(`SELECT 1`)
		b.Queue(`SELECT 2`)
		if err := pool.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
	}
	work(ctx)
	unsampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	uctx, u := unsampled.Tracer("t").Start(ctx, "unsampled")
	work(uctx)
	u.End()
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans without a recorded parent", n)
	}
	rctx, root := tp.Tracer("t").Start(ctx, "recorded")
	work(rctx)
	root.End()
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if len(names) != 3 || names[2] != "recorded" {
		t.Fatalf("spans below a recorded parent: %q; want the query's, the batch's and the parent", names)
	}
}
