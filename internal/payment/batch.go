package payment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/redislock"
)

// charge is one inventory.reserved on its way to a payment; record fills pay and dup.
type charge struct {
	e   event.Envelope
	pl  event.InventoryPayload
	pay Payment
	dup bool // a unique constraint already held this charge: nothing written, nothing published
}

// handleBatch is the consumer's batch handler: the same three layers as handle, with four round
// trips for the whole batch instead of several per event — one Redis pipeline takes the locks and
// checks the dedup cache, a two-round-trip transaction writes every payment and its event, then one
// pipeline marks the events and releases the locks. Events whose lock another instance holds right now, and a second
// event for an order already in the batch, take the single-event path afterwards (it waits for the
// lock), so nothing is decided twice. Any error fails the batch; the runner then handles its events
// one by one, and whatever this call committed is recognised there as a duplicate.
func (p *processor) handleBatch(ctx context.Context, es []event.Envelope) error {
	var (
		batch   []*charge
		later   []event.Envelope
		ignored []event.Type
		orders  = map[string]bool{}
	)
	for _, e := range es {
		if e.EventType != event.InventoryReserved {
			ignored = append(ignored, e.EventType)
			continue
		}
		pl, err := event.DecodePayload[event.InventoryPayload](e)
		if err != nil {
			return err
		}
		if orders[e.OrderID] {
			later = append(later, e)
			continue
		}
		orders[e.OrderID] = true
		batch = append(batch, &charge{e: e, pl: pl})
	}
	if len(batch) > 0 {
		contended, err := p.chargeBatch(ctx, batch)
		if err != nil {
			return err
		}
		later = append(contended, later...)
	}
	for _, e := range later {
		if err := p.handle(ctx, e); err != nil {
			return err
		}
	}
	for _, t := range ignored {
		p.metrics.ignored.WithLabelValues(string(t)).Inc()
	}
	return nil
}

// chargeBatch runs the layers for events of distinct orders and returns the events whose lock was
// taken by someone else. Redis sees two round trips: the locks with the dedup check, then the dedup
// marks with the releases.
func (p *processor) chargeBatch(ctx context.Context, batch []*charge) ([]event.Envelope, error) {
	ids := make([]string, len(batch))
	eventIDs := make([]string, len(batch))
	for i, c := range batch {
		ids[i], eventIDs[i] = c.e.OrderID, c.e.EventID
	}
	// Layer 1 without waiting (a lock held elsewhere sends its event to the single-event path) and
	// layer 2, read after the locks were taken, so an event another instance finished meanwhile is seen.
	locks, seen, err := redislock.TryAcquireAndCheck(ctx, p.locker, ids, p.dedup, eventIDs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		// Redis down: layer 3 alone still prevents a double charge.
		p.degrade("lock", err, p.log)
		p.degrade("dedup_check", err, p.log)
		locks, seen = make([]*redislock.Lock, len(batch)), make([]bool, len(batch))
	}
	start := time.Now()
	var contended []event.Envelope
	todo := batch[:0:0]
	held := 0
	for i, c := range batch {
		switch {
		case locks[i] == nil && err == nil: // without Redis, go ahead on the database layer
			contended = append(contended, c.e)
		case seen[i]:
			held++
			p.countRedisHit()
		default:
			held++
			todo = append(todo, c)
		}
	}
	var done []string
	defer func() {
		// After commit, the Redis marks go before the locks (a crash before them is caught by layer 3).
		if err := redislock.MarkAndRelease(context.WithoutCancel(ctx), p.dedup, done, p.locker, locks); err != nil {
			op := "unlock"
			if len(done) > 0 {
				op = "dedup_mark"
			}
			p.degrade(op, err, p.log)
		}
		for range held {
			p.metrics.duration.Observe(time.Since(start).Seconds())
		}
	}()
	if len(todo) == 0 {
		return contended, nil
	}
	if err := p.record(ctx, todo); err != nil {
		return nil, err
	}
	done = make([]string, len(todo))
	for i, c := range todo {
		done[i] = c.e.EventID
		p.countRecorded(c)
	}
	return contended, nil
}

// record decides each charge with the gateway and writes the payments of events of distinct orders
// and their events in one transaction: the inserts in one pipelined round trip, then the events of
// the rows inserted. A charge a unique constraint already holds (same eventId, or another payment
// for the order) is marked dup: nothing is written or published for it.
func (p *processor) record(ctx context.Context, todo []*charge) error {
	for _, c := range todo {
		reason, err := p.gateway.Decide(ctx, c.e.OrderID, c.pl.CustomerID, c.pl.Amount)
		if err != nil {
			return err
		}
		c.pay = Payment{OrderID: c.e.OrderID, IdempotencyKey: c.e.EventID, CustomerID: c.pl.CustomerID, Amount: c.pl.Amount,
			Currency: c.pl.Currency, Status: event.PaymentStatusAuthorized, CreatedAt: p.now().UTC().Truncate(time.Microsecond)}
		if reason != "" {
			c.pay.Status, c.pay.FailureReason = event.PaymentStatusFailed, &reason
		}
	}
	// Two round trips: the inserts with the BEGIN, the events of the rows inserted with the COMMIT.
	return pg.InPipe(ctx, p.pool, func(tx *pg.Pipe) (*pgx.Batch, error) {
		b := &pgx.Batch{}
		for _, c := range todo {
			c.dup = false
			b.Queue(insertPayment, c.pay.OrderID, c.pay.IdempotencyKey, c.pay.CustomerID, c.pay.Amount,
				c.pay.Currency, c.pay.Status, c.pay.FailureReason, c.pay.CreatedAt).QueryRow(func(row pgx.Row) error {
				err := row.Scan(&c.pay.PaymentID)
				if errors.Is(err, pgx.ErrNoRows) {
					c.dup = true // a unique constraint already holds this charge
					return nil
				}
				if err != nil {
					return fmt.Errorf("insert payment: %w", err)
				}
				return nil
			})
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("insert payments: %w", err)
		}
		var outs []event.Envelope
		for _, c := range todo {
			if c.dup {
				continue
			}
			out, err := p.factory.Caused(c.e, paymentEventType(c.pay), paymentPayload(c.pay))
			if err != nil {
				return nil, err
			}
			outs = append(outs, out)
		}
		w := &pgx.Batch{}
		// NOTIFY after the COMMIT: a payment event is caused by its order's inventory.reserved.
		return w, outbox.QueueAfterCommit(tx, w, outs...)
	})
}
