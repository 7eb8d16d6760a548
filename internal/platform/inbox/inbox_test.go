package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/platform/inbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

func openInbox(t *testing.T, ctx context.Context) *pgxpool.Pool {
	t.Helper()
	pool, err := pg.Open(ctx, testkit.NewDatabase(t), inbox.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (event_id uuid)`); err != nil {
		t.Fatal(err)
	}
	return pool
}

// apply records ids with i and applies an effect for each fresh one, in one transaction; it
// returns the fresh ids.
func apply(t *testing.T, ctx context.Context, pool *pgxpool.Pool, i *inbox.Inbox, ids ...string) []string {
	t.Helper()
	var fresh []string
	err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error {
		fresh = nil
		b := &pgx.Batch{}
		i.Record(b, ids, func(id string) { fresh = append(fresh, id) })
		if err := tx.Read(ctx, b); err != nil {
			return err
		}
		for _, id := range fresh {
			tx.Writes.Queue(`INSERT INTO effects VALUES ($1)`, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fresh
}

const (
	id1 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	id2 = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
)

func TestInboxAppliesEachEventOnce(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 60*time.Second)
	pool := openInbox(t, ctx)
	ib := inbox.New("test-group", prometheus.NewRegistry())
	other := inbox.New("other-group", prometheus.NewRegistry())
	if got := apply(t, ctx, pool, ib, id1); len(got) != 1 {
		t.Fatalf("first delivery: fresh %v", got)
	}
	if got := apply(t, ctx, pool, ib, id1, id2, id1); len(got) != 1 || got[0] != id2 {
		t.Fatalf("a batch with a redelivered event: fresh %v, want only %s", got, id2)
	}
	if got := apply(t, ctx, pool, other, id1); len(got) != 1 {
		t.Fatal("another consumer group must process the same event")
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM effects`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("effects %d (%v), want 3 (one per event and consumer group)", n, err)
	}
}

// TestRetentionPurgesOnlyExpiredRecords: records older than the retention go, younger ones stay;
// an event whose record was purged would be applied again, which is why the retention must cover
// the topics' (the time an event can still be redelivered).
func TestRetentionPurgesOnlyExpiredRecords(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 60*time.Second)
	pool := openInbox(t, ctx)
	ib := inbox.New("test-group", prometheus.NewRegistry())
	apply(t, ctx, pool, ib, id1, id2)
	if _, err := pool.Exec(ctx, `UPDATE processed_events SET processed_at = now() - interval '2 hours' WHERE event_id = $1`, id1); err != nil {
		t.Fatal(err)
	}
	n, err := inbox.Retention(time.Hour).Purge(ctx, pool)
	if err != nil || n != 1 {
		t.Fatalf("purged %d (%v), want the one record older than the retention", n, err)
	}
	if got := apply(t, ctx, pool, ib, id1, id2); len(got) != 1 || got[0] != id1 {
		t.Fatalf("after the purge fresh %v, want only the purged %s", got, id1)
	}
	if n, err := inbox.Retention(time.Hour).Purge(ctx, pool); err != nil || n != 0 {
		t.Fatalf("second purge removed %d (%v), want nothing", n, err)
	}
}
