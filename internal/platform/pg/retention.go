package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Retention is how long the rows of a table that only grows are kept: rows whose Column (a
// timestamp) is older than Keep are purged. A NULL Column is never old.
type Retention struct {
	Table, Column string
	Keep          time.Duration
}

// purgeChunk bounds one DELETE, so a large backlog never holds locks or builds WAL in one go.
const purgeChunk = 10000

// Purge deletes the expired rows of pool's table, a chunk per statement, and returns how many.
func (r Retention) Purge(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	t, c := pgx.Identifier{r.Table}.Sanitize(), pgx.Identifier{r.Column}.Sanitize()
	q := fmt.Sprintf(`DELETE FROM %s WHERE ctid = ANY(ARRAY(SELECT ctid FROM %s WHERE %s < now() - $1::interval LIMIT %d))`,
		t, t, c, purgeChunk)
	var total int64
	for {
		tag, err := pool.Exec(ctx, q, r.Keep.String())
		if err != nil {
			return total, fmt.Errorf("purge %s: %w", r.Table, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < purgeChunk {
			return total, nil
		}
	}
}
