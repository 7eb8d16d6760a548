package pg_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

// sends counts what a pool sends: batches and single statements.
type sends struct{ batches, queries atomic.Int32 }

func (s *sends) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	s.batches.Add(1)
	return ctx
}
func (*sends) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (*sends) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (s *sends) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	s.queries.Add(1)
	return ctx
}
func (*sends) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// batchTxPool opens a fresh database with a table t(k text primary key, n int) and a pool whose sends
// are counted.
func batchTxPool(t *testing.T) (*pgxpool.Pool, *sends) {
	t.Helper()
	ctx := testkit.Context(t, 30*time.Second)
	c := testkit.NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(c.URL(c.Database))
	if err != nil {
		t.Fatal(err)
	}
	tr := &sends{}
	cfg.ConnConfig.Tracer = tr
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE TABLE t (k text PRIMARY KEY, n int NOT NULL CHECK (n >= 0))`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO t VALUES ('a', 1)`); err != nil {
		t.Fatal(err)
	}
	tr.batches.Store(0)
	tr.queries.Store(0)
	return pool, tr
}

func value(t *testing.T, pool *pgxpool.Pool, k string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), `SELECT coalesce((SELECT n FROM t WHERE k = $1), -1)`, k).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBatchTxReadsLocksAndWritesInTwoRoundTrips: the row read under lock is written from the decision,
// the whole transaction is two batches and nothing else, and it is atomic.
func TestBatchTxReadsLocksAndWritesInTwoRoundTrips(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	pool, tr := batchTxPool(t)
	err := pg.InBatchTx(ctx, pool, func(p *pg.BatchTx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES ('b', 5)`)
		b.Queue(`SELECT n FROM t WHERE k = 'a' FOR UPDATE`)
		var n int
		b.QueuedQueries[1].QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
		if err := p.Read(ctx, b); err != nil {
			return err
		}
		// While the transaction is open, another connection sees neither write.
		if v := value(t, pool, "b"); v != -1 {
			t.Errorf("uncommitted insert visible: %d", v)
		}
		w := &p.Writes
		w.Queue(`UPDATE t SET n = $1 WHERE k = 'a'`, n+10)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The transaction itself is two batches; the one other statement is the visibility check.
	if got, q := tr.batches.Load(), tr.queries.Load(); got != 2 || q != 1 {
		t.Fatalf("sent %d batches and %d other statements, want 2 and 1", got, q)
	}
	if a, b := value(t, pool, "a"), value(t, pool, "b"); a != 11 || b != 5 {
		t.Fatalf("after commit a=%d b=%d, want 11 and 5", a, b)
	}

	// A write that fails rolls back the reads' writes too, and the connection is clean afterwards.
	err = pg.InBatchTx(ctx, pool, func(p *pg.BatchTx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES ('c', 1)`)
		if err := p.Read(ctx, b); err != nil {
			return err
		}
		w := &p.Writes
		w.Queue(`UPDATE t SET n = 0 WHERE k = 'a'`)
		w.Queue(`UPDATE t SET n = -1 WHERE k = 'b'`) // violates the check
		return nil
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("failing write: err %v, want a check violation", err)
	}
	if a, c := value(t, pool, "a"), value(t, pool, "c"); a != 11 || c != -1 {
		t.Fatalf("after the failed transaction a=%d c=%d, want 11 and none", a, c)
	}

	// fn failing after its reads rolls back; a retryable error runs fn again.
	boom := errors.New("boom")
	err = pg.InBatchTx(ctx, pool, func(p *pg.BatchTx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES ('d', 1)`)
		if err := p.Read(ctx, b); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || value(t, pool, "d") != -1 {
		t.Fatalf("fn error: err %v, d=%d", err, value(t, pool, "d"))
	}
	calls := 0
	err = pg.InBatchTx(ctx, pool, func(p *pg.BatchTx) error {
		calls++
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO t VALUES ('e', $1)`, calls)
		if err := p.Read(ctx, b); err != nil {
			return err
		}
		if calls < 3 {
			return &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
		}
		return nil
	})
	if err != nil || calls != 3 || value(t, pool, "e") != 3 {
		t.Fatalf("retry: calls %d err %v e=%d", calls, err, value(t, pool, "e"))
	}
	// Every connection went back clean: the pool still works on all of them.
	for range 5 {
		if v := value(t, pool, "a"); v != 11 {
			t.Fatalf("a=%d", v)
		}
	}
}

// TestBatchTxWithoutReadsIsOneAtomicBatch: writes alone go out as one implicit transaction.
func TestBatchTxWithoutReadsIsOneAtomicBatch(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	pool, tr := batchTxPool(t)
	err := pg.InBatchTx(ctx, pool, func(p *pg.BatchTx) error {
		w := &p.Writes
		w.Queue(`INSERT INTO t VALUES ('x', 1)`)
		w.Queue(`INSERT INTO t VALUES ('a', 1)`) // duplicate key
		return nil
	})
	if !pg.IsUniqueViolation(err, "") {
		t.Fatalf("err %v, want a unique violation", err)
	}
	if got := tr.batches.Load(); got != 1 {
		t.Fatalf("sent %d batches, want 1", got)
	}
	if x := value(t, pool, "x"); x != -1 {
		t.Fatalf("half of a failed batch was applied: x=%d", x)
	}
	if err := pg.InBatchTx(ctx, pool, func(*pg.BatchTx) error { return nil }); err != nil {
		t.Fatalf("nothing to do: %v", err)
	}
}

// TestBatchTxAfterCommit: statements queued with AfterCommit ride in the COMMIT's round trip, run only
// when the transaction committed, and run outside it: their failure neither undoes the commit nor
// makes InBatchTx report an error (or run fn again).
func TestBatchTxAfterCommit(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	pool, tr := batchTxPool(t)
	withReads := func(write, after string) (calls int, err error) {
		err = pg.InBatchTx(ctx, pool, func(p *pg.BatchTx) error {
			calls++
			if err := p.Read(ctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: `SELECT n FROM t WHERE k = 'a' FOR UPDATE`}}}); err != nil {
				return err
			}
			p.AfterCommit(func(b *pgx.Batch) { b.Queue(after) })
			w := &p.Writes
			w.Queue(write)
			return nil
		})
		return calls, err
	}

	// Committed: the statement after the COMMIT runs, in the same two round trips.
	if calls, err := withReads(`INSERT INTO t VALUES ('b', 2)`, `INSERT INTO t VALUES ('b-after', 1)`); err != nil || calls != 1 {
		t.Fatalf("calls %d err %v", calls, err)
	}
	if got := tr.batches.Load(); got != 2 {
		t.Fatalf("sent %d batches, want 2", got)
	}
	if b, after := value(t, pool, "b"), value(t, pool, "b-after"); b != 2 || after != 1 {
		t.Fatalf("b=%d b-after=%d, want 2 and 1", b, after)
	}

	// The transaction fails: nothing after its COMMIT runs.
	_, err := withReads(`UPDATE t SET n = -1 WHERE k = 'a'`, `INSERT INTO t VALUES ('c-after', 1)`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("failing write: err %v, want a check violation", err)
	}
	if after := value(t, pool, "c-after"); after != -1 {
		t.Fatalf("statement after a failed transaction ran: c-after=%d", after)
	}

	// The statement after the COMMIT fails: the transaction stands, InBatchTx succeeds without a rerun.
	calls, err := withReads(`INSERT INTO t VALUES ('d', 4)`, `UPDATE t SET n = -1 WHERE k = 'd'`)
	if err != nil || calls != 1 {
		t.Fatalf("failure after the commit: calls %d err %v, want 1 and nil", calls, err)
	}
	if d := value(t, pool, "d"); d != 4 {
		t.Fatalf("d=%d, want 4 (committed before the failing statement)", d)
	}

	// Without reads the writes become an explicit transaction, still one batch and still atomic.
	tr.batches.Store(0)
	noReads := func(after string, writes ...string) error {
		return pg.InBatchTx(ctx, pool, func(p *pg.BatchTx) error {
			p.AfterCommit(func(b *pgx.Batch) { b.Queue(after) })
			w := &p.Writes
			for _, s := range writes {
				w.Queue(s)
			}
			return nil
		})
	}
	if err := noReads(`INSERT INTO t VALUES ('e-after', 1)`, `INSERT INTO t VALUES ('e', 5)`); err != nil {
		t.Fatal(err)
	}
	if got := tr.batches.Load(); got != 1 {
		t.Fatalf("sent %d batches without reads, want 1", got)
	}
	if e, after := value(t, pool, "e"), value(t, pool, "e-after"); e != 5 || after != 1 {
		t.Fatalf("e=%d e-after=%d, want 5 and 1", e, after)
	}
	err = noReads(`INSERT INTO t VALUES ('f-after', 1)`, `INSERT INTO t VALUES ('f', 6)`, `INSERT INTO t VALUES ('a', 1)`)
	if !pg.IsUniqueViolation(err, "") {
		t.Fatalf("err %v, want a unique violation", err)
	}
	if f, after := value(t, pool, "f"), value(t, pool, "f-after"); f != -1 || after != -1 {
		t.Fatalf("failed batch left f=%d f-after=%d, want neither", f, after)
	}
	// Every connection went back clean.
	for range 5 {
		if v := value(t, pool, "a"); v != 1 {
			t.Fatalf("a=%d", v)
		}
	}
}
