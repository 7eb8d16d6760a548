package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BatchTx is a read-decide-write transaction in two round trips: its BEGIN travels with the first
// batch of reads and its COMMIT with the batch of writes, where pgx's Begin and Commit would take
// one round trip each. On a loaded machine every round trip is a wake-up of both processes, which
// is what the event handlers' CPU goes to.
type BatchTx struct {
	// Writes are sent with the COMMIT, in the order queued.
	Writes pgx.Batch
	conn   *pgxpool.Conn
	begun  bool
	after  pgx.Batch
}

// AfterCommit has queue add statements that run right after the COMMIT, in the same round trip but
// outside the transaction: the server skips everything after a failed statement, so they run only
// if the transaction committed. They must not be needed for its outcome: once the COMMIT succeeded,
// their errors are dropped (the transaction stands, and InBatchTx must not run fn again); the server
// logs them. The outbox sends its NOTIFY there (outbox.Caused), keeping the commit out of
// Postgres's notify lock; a NOTIFY lost that way (say, the notification queue full behind a stalled
// listener) only delays the rows until the relay's next table read, where one inside the transaction
// would have failed the commit.
func (p *BatchTx) AfterCommit(queue func(*pgx.Batch)) {
	queue(&p.after)
}

// Read sends b inside the transaction and reads its results (through the callbacks queued with
// b's statements); the first batch also begins the transaction.
func (p *BatchTx) Read(ctx context.Context, b *pgx.Batch) error {
	return p.send(ctx, b).Close()
}

func (p *BatchTx) send(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if p.begun {
		return p.conn.SendBatch(ctx, b)
	}
	p.begun = true
	nb := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+1)}
	nb.Queue("BEGIN")
	nb.QueuedQueries = append(nb.QueuedQueries, b.QueuedQueries...)
	br := p.conn.SendBatch(ctx, nb)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return pgx.FailedBatchResults(b, fmt.Errorf("begin: %w", err))
	}
	return br
}

// errCommitRolledBack: COMMIT answered ROLLBACK (the transaction had failed).
var errCommitRolledBack = errors.New("commit rolled back")

// commit sends the writes with the COMMIT, or alone as one implicit transaction when nothing was
// read and nothing follows the commit (a batch outside an explicit transaction is atomic).
func (p *BatchTx) commit(ctx context.Context) error {
	b := &p.Writes
	if !p.begun && p.after.Len() > 0 {
		b.QueuedQueries = append([]*pgx.QueuedQuery{{SQL: "BEGIN"}}, b.QueuedQueries...)
		p.begun = true
	}
	committed := false
	if p.begun {
		b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
			if ct.String() == "ROLLBACK" {
				return errCommitRolledBack
			}
			committed = true
			return nil
		})
	} else if b.Len() == 0 {
		return nil
	}
	b.QueuedQueries = append(b.QueuedQueries, p.after.QueuedQueries...)
	err := p.conn.SendBatch(ctx, b).Close()
	if committed {
		return nil
	}
	return err
}

// InBatchTx runs fn on one connection of pool: fn sends its reads with tx.Read and queues its
// writes in tx.Writes, sent with the COMMIT. A serialization failure or deadlock runs fn again, like
// InTx; any other error rolls back and is returned. fn must have no side effects outside tx.
func InBatchTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx *BatchTx) error) error {
	return retryConflicts(ctx, func() error { return batchTxOnce(ctx, pool, fn) })
}

func batchTxOnce(ctx context.Context, pool *pgxpool.Pool, fn func(tx *BatchTx) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	// Release destroys a connection still inside a transaction, so a failed ROLLBACK cannot leak one.
	defer conn.Release()
	p := &BatchTx{conn: conn}
	err = fn(p)
	if err == nil {
		err = p.commit(ctx)
	}
	if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(rctx, "ROLLBACK")
	}
	return err
}
