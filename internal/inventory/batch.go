package inventory

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// applyBatch is the set-based form of reserveTx/releaseTx for a whole partition batch: a handful of
// statements per batch instead of several per event. Decisions are made in Go, in event order,
// against the locked stock rows, so the result equals applying the events one by one.
func (s *store) applyBatch(ctx context.Context, es []event.Envelope, created map[int]event.OrderCreatedPayload) ([]outcome, error) {
	var outs []outcome
	err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		outs, err = s.applyBatchTx(ctx, tx, es, created)
		return err
	})
	return outs, err
}

type heldItem struct {
	item string
	qty  int
}

func (s *store) applyBatchTx(ctx context.Context, tx pgx.Tx, es []event.Envelope, created map[int]event.OrderCreatedPayload) ([]outcome, error) {
	outs := make([]outcome, len(es))
	// 1. Inbox: which events are new (a duplicate inside the batch counts once).
	ids := make([]string, 0, len(es))
	for _, e := range es {
		ids = append(ids, e.EventID)
	}
	rows, err := tx.Query(ctx, `INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[])
		ON CONFLICT DO NOTHING RETURNING event_id::text`, s.inbox.Consumer, ids)
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	fresh, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	isFresh := map[string]bool{}
	for _, id := range fresh {
		isFresh[id] = true
	}
	// 2. Orders already decided, and the live reservations that payment.failed events release.
	var orders, failed []string
	for i, e := range es {
		switch {
		case !isFresh[e.EventID]:
		case e.EventType == event.OrderCreated:
			orders = append(orders, es[i].OrderID)
		case e.EventType == event.PaymentFailed:
			failed = append(failed, e.OrderID)
		}
	}
	decided := map[string]bool{}
	if len(orders) > 0 {
		rows, err := tx.Query(ctx, `SELECT order_id FROM reservations WHERE order_id = ANY($1)`, orders)
		if err != nil {
			return nil, fmt.Errorf("look up reservations: %w", err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("look up reservations: %w", err)
		}
		for _, o := range got {
			decided[o] = true
		}
	}
	type live struct {
		resID string
		items []heldItem
	}
	releasable := map[string]*live{}
	if len(failed) > 0 {
		rows, err := tx.Query(ctx, `SELECT r.order_id, r.reservation_id::text, ri.item_id, ri.quantity FROM reservations r
			JOIN reservation_items ri USING (reservation_id) WHERE r.order_id = ANY($1) AND r.status = 'RESERVED'
			ORDER BY r.reservation_id FOR UPDATE OF r`, failed)
		if err != nil {
			return nil, fmt.Errorf("look up live reservations: %w", err)
		}
		var o, rid, item string
		var q int
		_, err = pgx.ForEachRow(rows, []any{&o, &rid, &item, &q}, func() error {
			if releasable[o] == nil {
				releasable[o] = &live{resID: rid}
			}
			releasable[o].items = append(releasable[o].items, heldItem{item, q})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("look up live reservations: %w", err)
		}
	}
	// 3. Lock every stock row the batch may touch, in item order (no deadlocks between batches).
	var items []string
	for i, e := range es {
		if e.EventType == event.OrderCreated && isFresh[e.EventID] {
			for _, it := range created[i].Items {
				items = append(items, it.ItemID)
			}
		}
	}
	for _, l := range releasable {
		for _, h := range l.items {
			items = append(items, h.item)
		}
	}
	slices.Sort(items)
	items = slices.Compact(items)
	avail := map[string]int{}
	if len(items) > 0 {
		rows, err := tx.Query(ctx, `SELECT item_id, available FROM stock WHERE item_id = ANY($1) ORDER BY item_id FOR UPDATE`, items)
		if err != nil {
			return nil, fmt.Errorf("lock stock: %w", err)
		}
		var id string
		var a int
		if _, err := pgx.ForEachRow(rows, []any{&id, &a}, func() error { avail[id] = a; return nil }); err != nil {
			return nil, fmt.Errorf("lock stock: %w", err)
		}
	}
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
			resID := uuid.NewString()
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
				return nil, err
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
				return nil, err
			}
			outEvents = append(outEvents, out)
			outs[i] = outcome{result: "released"}
		default:
			outs[i] = outcome{result: "ignored:" + string(e.EventType)}
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
			SELECT r, o, s, NULLIF(x, ''), $5 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(r, o, s, x)`,
			resIDs, resOrders, resStatus, resReason, now)
	}
	if len(itemRes) > 0 {
		b.Queue(`INSERT INTO reservation_items (reservation_id, item_id, quantity) SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[])`,
			itemRes, itemIDs, itemQty)
	}
	if len(released) > 0 {
		b.Queue(`UPDATE reservations SET status = 'RELEASED', released_at = $2 WHERE reservation_id = ANY($1::uuid[])`, released, now)
	}
	// The outbox rows ride in the same round trip: the stock rows stay locked until the commit, so
	// every round trip here lengthens the other partition workers' wait.
	if err := outbox.Queue(b, outEvents...); err != nil {
		return nil, err
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("write batch: %w", err)
		}
	}
	return outs, nil
}
