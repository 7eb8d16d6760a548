package inventory

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// applyBatch is the set-based form of reserveTx/releaseTx for a whole partition batch, in two round
// trips whatever the batch holds: the inbox records, the lookups and the locks go out with the BEGIN,
// the writes and the events with the COMMIT. Decisions are made in Go, in event order, against the
// locked stock rows, so the result equals applying the events one by one. A batch of events that
// inventory ignores touches nothing (like handle).
func (s *store) applyBatch(ctx context.Context, es []event.Envelope, created map[int]event.OrderCreatedPayload) ([]outcome, error) {
	var outs []outcome
	err := pg.InPipe(ctx, s.pool, func(p *pg.Pipe) (*pgx.Batch, error) {
		var (
			w   *pgx.Batch
			err error
		)
		outs, w, err = s.applyBatchTx(ctx, p, es, created)
		return w, err
	})
	return outs, err
}

type heldItem struct {
	item string
	qty  int
}

// live is a reservation holding stock, which a payment.failed releases.
type live struct {
	resID string
	items []heldItem
}

// batchReads is what the first round trip of a batch learns, everything under lock.
type batchReads struct {
	fresh      map[string]bool  // event ids recorded now (not processed before)
	decided    map[string]bool  // orders that already have a reservation
	releasable map[string]*live // live reservations of the payment.failed orders
	avail      map[string]int   // locked stock rows
}

// readBatch records the relevant events in the inbox and reads and locks what deciding them needs:
// the reservations of the orders (and the live ones of payment.failed orders, locked), then every
// stock row they may touch in item order (no deadlocks between batches). The lookups cover
// duplicates too; deciding ignores those.
func readBatch(ctx context.Context, p *pg.Pipe, consumer string, es []event.Envelope, created map[int]event.OrderCreatedPayload) (batchReads, error) {
	r := batchReads{fresh: map[string]bool{}, decided: map[string]bool{}, releasable: map[string]*live{}, avail: map[string]int{}}
	var ids, orders, failed, items []string
	for i, e := range es {
		switch e.EventType {
		case event.OrderCreated:
			orders = append(orders, e.OrderID)
			for _, it := range created[i].Items {
				items = append(items, it.ItemID)
			}
		case event.PaymentFailed:
			failed = append(failed, e.OrderID)
		default:
			continue
		}
		ids = append(ids, e.EventID)
	}
	slices.Sort(items)
	items = slices.Compact(items)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[]::uuid[])
		ON CONFLICT DO NOTHING RETURNING event_id::text`, consumer, ids).Query(func(rows pgx.Rows) error {
		var id string
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error { r.fresh[id] = true; return nil })
		if err != nil {
			return fmt.Errorf("inbox: %w", err)
		}
		return nil
	})
	if len(orders) > 0 {
		b.Queue(`SELECT order_id FROM reservations WHERE order_id = ANY($1)`, orders).Query(func(rows pgx.Rows) error {
			var o string
			_, err := pgx.ForEachRow(rows, []any{&o}, func() error { r.decided[o] = true; return nil })
			if err != nil {
				return fmt.Errorf("look up reservations: %w", err)
			}
			return nil
		})
	}
	if len(failed) > 0 {
		b.Queue(`SELECT r.order_id, r.reservation_id::text, ri.item_id, ri.quantity FROM reservations r
			JOIN reservation_items ri USING (reservation_id) WHERE r.order_id = ANY($1) AND r.status = 'RESERVED'
			ORDER BY r.reservation_id FOR UPDATE OF r`, failed).Query(func(rows pgx.Rows) error {
			var o, rid, item string
			var q int
			_, err := pgx.ForEachRow(rows, []any{&o, &rid, &item, &q}, func() error {
				if r.releasable[o] == nil {
					r.releasable[o] = &live{resID: rid}
				}
				r.releasable[o].items = append(r.releasable[o].items, heldItem{item, q})
				return nil
			})
			if err != nil {
				return fmt.Errorf("look up live reservations: %w", err)
			}
			return nil
		})
	}
	if len(items) > 0 || len(failed) > 0 {
		// Either list may be nil, sent as NULL: = ANY(NULL) matches nothing, as an empty array would.
		b.Queue(`SELECT item_id, available FROM stock WHERE item_id = ANY($1) OR item_id IN (
				SELECT ri.item_id FROM reservations r JOIN reservation_items ri USING (reservation_id)
				WHERE r.order_id = ANY($2) AND r.status = 'RESERVED')
			ORDER BY item_id FOR UPDATE`, items, failed).Query(func(rows pgx.Rows) error {
			var id string
			var a int
			if _, err := pgx.ForEachRow(rows, []any{&id, &a}, func() error { r.avail[id] = a; return nil }); err != nil {
				return fmt.Errorf("lock stock: %w", err)
			}
			return nil
		})
	}
	return r, p.SendBatch(ctx, b).Close()
}

func (s *store) applyBatchTx(ctx context.Context, p *pg.Pipe, es []event.Envelope, created map[int]event.OrderCreatedPayload) ([]outcome, *pgx.Batch, error) {
	outs := make([]outcome, len(es))
	relevant := false
	for i, e := range es {
		if e.EventType == event.OrderCreated || e.EventType == event.PaymentFailed {
			relevant = true
		} else {
			outs[i] = outcome{result: "ignored:" + string(e.EventType)}
		}
	}
	if !relevant {
		return outs, nil, nil
	}
	r, err := readBatch(ctx, p, s.inbox.Consumer, es, created)
	if err != nil {
		return nil, nil, err
	}
	isFresh, decided, releasable, avail := r.fresh, r.decided, r.releasable, r.avail
	// 4. Decide in event order.
	now := s.now().UTC()
	delta := map[string]int{} // item → units moved from available to reserved (negative: released)
	var (
		resIDs, resOrders, resStatus, resReason []string
		itemRes, itemIDs                        []string
		itemQty                                 []int32
		released                                []string
		outEvents                               []event.Envelope
	)
	seenOrder := map[string]bool{}
	for i, e := range es {
		if e.EventType != event.OrderCreated && e.EventType != event.PaymentFailed {
			continue // outs[i] says ignored
		}
		if !isFresh[e.EventID] {
			outs[i] = outcome{duplicate: true}
			continue
		}
		switch e.EventType {
		case event.OrderCreated:
			if decided[e.OrderID] || seenOrder[e.OrderID] {
				outs[i] = outcome{duplicate: true}
				continue
			}
			seenOrder[e.OrderID] = true
			p := created[i]
			lines := aggregate(p.Items)
			resID := event.NewID()
			d := decide(e.OrderID, p, lines, avail, resID)
			typ, status, reason, payload := d.typ, d.status, d.reason, d.payload
			if status == StatusReserved {
				held := &live{resID: resID}
				for _, l := range lines {
					avail[l.itemID] -= l.qty
					delta[l.itemID] += l.qty
					itemRes, itemIDs, itemQty = append(itemRes, resID), append(itemIDs, l.itemID), append(itemQty, int32(l.qty)) //nolint:gosec // event.MaxQuantity bounds qty
					held.items = append(held.items, heldItem{l.itemID, l.qty})
				}
				releasable[e.OrderID] = held // a later payment.failed in this batch releases it
			}
			resIDs, resOrders, resStatus, resReason = append(resIDs, resID), append(resOrders, e.OrderID), append(resStatus, status), append(resReason, reason)
			out, err := s.factory.Caused(e, typ, payload)
			if err != nil {
				return nil, nil, err
			}
			outEvents = append(outEvents, out)
			outs[i] = outcome{result: "reserved", reason: reason}
			if status == StatusRejected {
				outs[i].result = "rejected"
			}
		case event.PaymentFailed:
			l := releasable[e.OrderID]
			if l == nil {
				outs[i] = outcome{result: "ignored"}
				continue
			}
			delete(releasable, e.OrderID) // a second payment.failed in the batch releases nothing
			for _, h := range l.items {
				avail[h.item] += h.qty
				delta[h.item] -= h.qty
			}
			released = append(released, l.resID)
			out, err := s.factory.Caused(e, event.InventoryReleased, event.InventoryReleasedPayload{OrderID: e.OrderID, ReservationID: l.resID, Reason: "PAYMENT_FAILED"})
			if err != nil {
				return nil, nil, err
			}
			outEvents = append(outEvents, out)
			outs[i] = outcome{result: "released"}
		}
	}
	// 5. Write everything, events included, in one pipelined round trip.
	b := &pgx.Batch{}
	if len(delta) > 0 {
		var dItems []string
		var dQty []int32
		for it, q := range delta {
			if q != 0 {
				dItems, dQty = append(dItems, it), append(dQty, int32(q)) //nolint:gosec // a sum of validated line quantities of one batch
			}
		}
		b.Queue(`UPDATE stock SET available = available - u.q, reserved = reserved + u.q, updated_at = $3
			FROM unnest($1::text[], $2::int[]) AS u(item_id, q) WHERE stock.item_id = u.item_id`, dItems, dQty, now)
	}
	if len(resIDs) > 0 {
		b.Queue(`INSERT INTO reservations (reservation_id, order_id, status, reason, created_at)
			SELECT r, o, s, NULLIF(x, ''), $5 FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::text[]) AS u(r, o, s, x)`,
			resIDs, resOrders, resStatus, resReason, now)
	}
	if len(itemRes) > 0 {
		b.Queue(`INSERT INTO reservation_items (reservation_id, item_id, quantity) SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::int[])`,
			itemRes, itemIDs, itemQty)
	}
	if len(released) > 0 {
		b.Queue(`UPDATE reservations SET status = 'RELEASED', released_at = $2 WHERE reservation_id = ANY($1::text[]::uuid[])`, released, now)
	}
	// The outbox rows ride in the same round trip, with the COMMIT: the stock rows stay locked until
	// then, so every round trip here would lengthen the other partition workers' wait. Their NOTIFY
	// follows the COMMIT (inventory's events are each caused by the previous event of their order).
	if err := outbox.QueueAfterCommit(p, b, outEvents...); err != nil {
		return nil, nil, err
	}
	return outs, b, nil
}
