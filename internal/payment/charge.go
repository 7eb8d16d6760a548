package payment

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/redislock"
)

// charge is one event on its way to the order's payments row: an inventory.reserved to charge, or
// an inventory.released after an accepted cancellation (cancel set, with the cancellation's reason)
// to refund or to stop a later charge. record fills pay and dup.
type charge struct {
	e      event.Envelope
	pl     event.InventoryPayload
	cancel string // non-empty: a cancellation, with its reason
	pay    Payment
	dup    bool // a unique constraint already held this charge: nothing written, nothing published
	// outcome of a cancellation, or of a charge the order's cancellation stopped (see cancelOutcome*)
	outcome string
}

// errLockHeld fails a batch of several events when another instance holds one of their orders'
// locks: the runner hands the batch over in halves, and a single event waits for its lock.
var errLockHeld = errors.New("a payment lock of the batch is held elsewhere")

// handle is the consumer handler: the three layers (docs/payment.md) for a partition's charges and
// refunds, in
// four round trips whatever their number — one Redis pipeline takes the locks and checks the dedup
// cache, a two-round-trip transaction writes every payment and its event, one pipeline marks the
// events and releases the locks. A second event of an order already in the batch goes in a later
// round, so every order is decided under its own lock once at a time. An error fails what is left;
// whatever was committed is recognised as a duplicate when the events come again.
func (p *processor) handle(ctx context.Context, es []event.Envelope) error {
	var (
		todo    []*charge
		ignored []event.Type
	)
	for _, e := range es {
		switch e.EventType {
		case event.InventoryReserved:
			pl, err := event.DecodePayload[event.InventoryPayload](e)
			if err != nil {
				return err
			}
			todo = append(todo, &charge{e: e, pl: pl})
		case event.InventoryReleased:
			pl, err := event.DecodePayload[event.InventoryReleasedPayload](e)
			if err != nil {
				return err
			}
			if pl.Reason != event.ReasonOrderCancelled {
				ignored = append(ignored, e.EventType) // released after payment.failed: nothing was charged
				continue
			}
			reason := cmp.Or(pl.CancelReason, pl.Reason)
			todo = append(todo, &charge{e: e, cancel: reason})
		default:
			ignored = append(ignored, e.EventType)
		}
	}
	todo, skipped := cancelledFirst(todo)
	for len(todo) > 0 {
		var round, later []*charge
		orders := map[string]bool{}
		for _, c := range todo {
			if orders[c.e.OrderID] {
				later = append(later, c)
				continue
			}
			orders[c.e.OrderID] = true
			round = append(round, c)
		}
		if err := p.chargeRound(ctx, round); err != nil {
			return err
		}
		todo = later
	}
	for _, t := range ignored {
		p.metrics.ignored.WithLabelValues(string(t)).Inc()
	}
	p.metrics.cancels.WithLabelValues(cancelOutcomeChargeSkip).Add(float64(skipped))
	return nil
}

// cancelledFirst drops the charges of orders whose cancellation is in the same batch: the
// reservation was released before payment-service got to it (typically after payment-service was
// stopped), so the order is never charged; the cancellation still writes the order's CANCELLED row.
// It returns the charges left and how many it dropped.
func cancelledFirst(todo []*charge) ([]*charge, int) {
	cancelled := map[string]bool{}
	for _, c := range todo {
		if c.cancel != "" {
			cancelled[c.e.OrderID] = true
		}
	}
	if len(cancelled) == 0 {
		return todo, 0
	}
	kept := todo[:0]
	for _, c := range todo {
		if c.cancel == "" && cancelled[c.e.OrderID] {
			continue
		}
		kept = append(kept, c)
	}
	return kept, len(todo) - len(kept)
}

// chargeRound runs the layers for events of distinct orders.
func (p *processor) chargeRound(ctx context.Context, batch []*charge) error {
	ids := make([]string, len(batch))
	eventIDs := make([]string, len(batch))
	for i, c := range batch {
		ids[i], eventIDs[i] = c.e.OrderID, c.e.EventID
	}
	// Layer 1 without waiting, and layer 2, read after the locks were taken, so an event another
	// instance finished meanwhile is seen.
	locks, seen, err := redislock.TryAcquireAndCheck(ctx, p.locker, ids, p.dedup, eventIDs)
	switch {
	case err != nil && ctx.Err() != nil:
		return err
	case err != nil:
		// Redis down: layer 3 alone still prevents a double charge.
		p.degrade("lock", err, p.log)
		p.degrade("dedup_check", err, p.log)
		locks, seen = make([]*redislock.Lock, len(batch)), make([]bool, len(batch))
	case slices.Contains(locks, nil) && len(batch) > 1:
		p.release(ctx, nil, locks)
		return errLockHeld
	case locks[0] == nil:
		if locks[0], seen[0], err = p.waitLock(ctx, batch[0].e); err != nil {
			return err
		}
	}
	start := time.Now()
	var done []string
	defer func() {
		p.release(ctx, done, locks)
		for range batch {
			p.metrics.duration.Observe(time.Since(start).Seconds())
		}
	}()
	todo := batch[:0:0]
	for i, c := range batch {
		if seen[i] {
			p.countRedisHit()
			continue
		}
		todo = append(todo, c)
	}
	if len(todo) == 0 {
		return nil
	}
	if err := p.record(ctx, todo); err != nil {
		return err
	}
	done = make([]string, len(todo))
	for i, c := range todo {
		done[i] = c.e.EventID
		p.countRecorded(c)
	}
	return nil
}

// waitLock waits for the lock of a single event's order held by another instance (layer 1), then
// checks layer 2 again: that instance may have finished the event meanwhile.
func (p *processor) waitLock(ctx context.Context, e event.Envelope) (*redislock.Lock, bool, error) {
	lock, err := p.locker.Acquire(ctx, e.OrderID)
	switch {
	case errors.Is(err, redislock.ErrNotAcquired):
		p.metrics.lockTimeout.Inc()
		return nil, false, kafka.Unavailable(errLockTimeout) // retried without limit: never dead-lettered
	case err != nil && ctx.Err() != nil:
		return nil, false, err
	case err != nil:
		p.degrade("lock", err, p.log) // Redis failed meanwhile: go on on the database layer
		return nil, false, nil
	}
	seen, err := p.dedup.Seen(ctx, e.EventID)
	return lock, err == nil && seen, nil
}

// release marks the committed events in Redis, then releases the locks (a crash before the marks
// is caught by layer 3).
func (p *processor) release(ctx context.Context, done []string, locks []*redislock.Lock) {
	if err := redislock.MarkAndRelease(context.WithoutCancel(ctx), p.dedup, done, p.locker, locks); err != nil {
		op := "unlock"
		if len(done) > 0 {
			op = "dedup_mark"
		}
		p.degrade(op, err, p.log)
	}
}

// record decides each charge with the gateway and writes the payments of events of distinct orders
// and their events in one transaction: the inserts in one pipelined round trip, then the events of
// the rows inserted. A charge a unique constraint already holds (same eventId, or another payment
// for the order) is marked dup: nothing is written or published for it.
func (p *processor) record(ctx context.Context, todo []*charge) error {
	for _, c := range todo {
		if c.cancel != "" {
			continue
		}
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
	return pg.InBatchTx(ctx, p.pool, func(tx *pg.BatchTx) error {
		b := &pgx.Batch{}
		now := p.now().UTC().Truncate(time.Microsecond)
		for _, c := range todo {
			c.dup, c.outcome = false, ""
			if c.cancel != "" {
				p.queueCancel(b, c, now)
				continue
			}
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
		if err := tx.Read(ctx, b); err != nil {
			return fmt.Errorf("insert payments: %w", err)
		}
		if err := p.explainDups(ctx, tx, todo); err != nil {
			return err
		}
		var outs []event.Envelope
		for _, c := range todo {
			if c.dup || c.outcome == cancelOutcomeBeforeCharge {
				continue
			}
			typ, payload := paymentEventType(c.pay), any(paymentPayload(c.pay))
			if c.cancel != "" {
				typ, payload = event.PaymentRefunded, event.PaymentRefundedPayload{PaymentID: c.pay.PaymentID, OrderID: c.pay.OrderID,
					Amount: c.pay.Amount, Currency: c.pay.Currency, Reason: c.cancel}
			}
			out, err := p.factory.Caused(c.e, typ, payload)
			if err != nil {
				return err
			}
			outs = append(outs, out)
		}
		return outbox.Caused(tx, outs...)
	})
}

// Outcomes of a cancellation (and of a charge that came after one), for the metrics.
const (
	cancelOutcomeRefunded     = "refunded"          // the authorized payment was refunded
	cancelOutcomeBeforeCharge = "before_charge"     // no payment yet: none will be made
	cancelOutcomeNothing      = "nothing_to_refund" // declined, or refunded or cancelled before (a duplicate)
	cancelOutcomeChargeSkip   = "charge_skipped"    // an inventory.reserved for an order cancelled before (or in the same batch)
)

// cancelPayment is layer 3 for a cancellation: the order's row becomes CANCELLED when it has none
// yet (a later charge conflicts with it and charges nothing), or AUTHORIZED becomes REFUNDED once.
// Any other row (declined, refunded, cancelled) is left as it is and nothing is returned.
const cancelPayment = `INSERT INTO payments (order_id, idempotency_key, status, cancel_reason, created_at)
	VALUES ($1, $2, 'CANCELLED', $3, $4)
	ON CONFLICT (order_id) DO UPDATE SET status = 'REFUNDED', refund_key = EXCLUDED.idempotency_key,
		refunded_at = EXCLUDED.created_at, cancel_reason = EXCLUDED.cancel_reason
	WHERE payments.status = 'AUTHORIZED'
	RETURNING payment_id, status, coalesce(amount, 0), coalesce(currency, '')`

// queueCancel queues a cancellation's statement and fills c.pay and c.outcome from its result.
func (p *processor) queueCancel(b *pgx.Batch, c *charge, now time.Time) {
	c.outcome = cancelOutcomeNothing
	b.Queue(cancelPayment, c.e.OrderID, c.e.EventID, c.cancel, now).QueryRow(func(row pgx.Row) error {
		c.pay.OrderID = c.e.OrderID
		err := row.Scan(&c.pay.PaymentID, &c.pay.Status, &c.pay.Amount, &c.pay.Currency)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			c.dup = true
			return nil
		case err != nil:
			return fmt.Errorf("cancel payment: %w", err)
		case c.pay.Status == StatusCancelled:
			c.outcome = cancelOutcomeBeforeCharge
		default:
			c.outcome = cancelOutcomeRefunded
		}
		return nil
	})
}

// explainDups tells, for charges a unique constraint refused, the duplicates from the charges of
// orders cancelled before (one more round trip, only when a charge was refused).
func (p *processor) explainDups(ctx context.Context, tx *pg.BatchTx, todo []*charge) error {
	var orders []string
	for _, c := range todo {
		if c.dup && c.cancel == "" {
			orders = append(orders, c.e.OrderID)
		}
	}
	if len(orders) == 0 {
		return nil
	}
	cancelled := map[string]bool{}
	b := &pgx.Batch{}
	b.Queue(`SELECT order_id FROM payments WHERE order_id = ANY($1) AND status = 'CANCELLED'`, orders).Query(func(rows pgx.Rows) error {
		var o string
		_, err := pgx.ForEachRow(rows, []any{&o}, func() error { cancelled[o] = true; return nil })
		return err
	})
	if err := tx.Read(ctx, b); err != nil {
		return fmt.Errorf("read cancelled payments: %w", err)
	}
	for _, c := range todo {
		if c.dup && c.cancel == "" && cancelled[c.e.OrderID] {
			c.outcome = cancelOutcomeChargeSkip
		}
	}
	return nil
}
