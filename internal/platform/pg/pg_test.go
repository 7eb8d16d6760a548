package pg_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orderflow/orderflow/internal/platform/inbox"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

func TestOpenCreatesDatabaseMigratesAndRetriesSerializationFailures(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 60*time.Second)
	c := testkit.NewDatabase(t)
	pool, err := pg.Open(ctx, c, outbox.Migrations(), inbox.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// Opening again (a second replica) finds everything applied.
	again, err := pg.Open(ctx, c, outbox.Migrations(), inbox.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	again.Close()

	calls := 0
	err = pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		calls++
		if calls < 3 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		_, err := tx.Exec(ctx, `INSERT INTO processed_events (consumer, event_id) VALUES ('c', gen_random_uuid())`)
		return err
	})
	if err != nil || calls != 3 {
		t.Fatalf("InTx: calls %d err %v", calls, err)
	}
	boom := errors.New("boom")
	calls = 0
	if err := pg.InTx(ctx, pool, func(pgx.Tx) error { calls++; return boom }); !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("non-retryable error: calls %d err %v", calls, err)
	}
}
