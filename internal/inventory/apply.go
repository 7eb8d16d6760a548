package inventory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// apply handles a partition's events in one transaction of two round trips whatever the batch
// holds: the inbox records, the lookups and the locks go out with the BEGIN, the writes and the
// events with the COMMIT. Decisions are made in Go, in event order, against the locked stock rows
// (see plan). A batch of events that inventory ignores touches nothing.
func (s *store) apply(ctx context.Context, es []event.Envelope, created map[int]event.OrderCreatedPayload) ([]outcome, error) {
	outs := make([]outcome, len(es))
	if !slices.ContainsFunc(es, relevant) {
		return outs, nil
	}
	err := pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		r, err := s.read(ctx, tx, es, created)
		if err != nil {
			return err
		}
		var w writes
		outs, w, err = s.plan(es, created, &r)
		if err != nil {
			return err
		}
		w.queue(&tx.Writes, s.now().UTC())
		// The stock rows stay locked until the COMMIT, so the events ride with it.
		return outbox.Caused(tx, w.events...)
	})
	return outs, err
}

// relevant reports whether inventory acts on events of e's type.
func relevant(e event.Envelope) bool {
	return e.EventType == event.OrderCreated || releases(e)
}

// releases reports whether an event of e's type gives back the order's stock: payment.failed, and
// delivery.cancelled (the order's cancellation was accepted). It returns the release reason.
func releaseReason(e event.Envelope) string {
	switch e.EventType {
	case event.PaymentFailed:
		return event.ReasonPaymentFailed
	case event.DeliveryCancelled:
		return event.ReasonOrderCancelled
	}
	return ""
}

func releases(e event.Envelope) bool { return releaseReason(e) != "" }

type heldItem struct {
	item string
	qty  int
}

// live is a reservation holding stock, which a payment.failed or a delivery.cancelled releases.
type live struct {
	resID string
	items []heldItem
}

// batchReads is what the first round trip of a batch learns, everything under lock.
type batchReads struct {
	fresh      map[string]bool   // event ids recorded now (not processed before)
	decided    map[string]string // orders that already have a reservation (or were cancelled first) → its status
	releasable map[string]*live  // live reservations of the orders to release
	avail      map[string]int    // locked stock rows
}

// read records the relevant events in the inbox and reads and locks what deciding them needs:
// the reservations of the orders (and the live ones of the orders to release, locked), then every
// stock row they may touch in item order (no deadlocks between batches). The lookups cover
// duplicates too; deciding ignores those.
func (s *store) read(ctx context.Context, tx *pg.BatchTx, es []event.Envelope, created map[int]event.OrderCreatedPayload) (batchReads, error) {
	r := batchReads{fresh: map[string]bool{}, decided: map[string]string{}, releasable: map[string]*live{}, avail: map[string]int{}}
	var ids, orders, failed, items []string
	for i, e := range es {
		switch {
		case e.EventType == event.OrderCreated:
			orders = append(orders, e.OrderID)
			for _, it := range created[i].Items {
				items = append(items, it.ItemID)
			}
		case e.EventType == event.DeliveryCancelled:
			orders, failed = append(orders, e.OrderID), append(failed, e.OrderID)
		case releases(e):
			failed = append(failed, e.OrderID)
		default:
			continue
		}
		ids = append(ids, e.EventID)
	}
	slices.Sort(items)
	items = slices.Compact(items)
	b := &pgx.Batch{}
	s.inbox.Record(b, ids, func(id string) { r.fresh[id] = true })
	if len(orders) > 0 {
		b.Queue(`SELECT order_id, status FROM reservations WHERE order_id = ANY($1)`, orders).Query(func(rows pgx.Rows) error {
			var o, st string
			_, err := pgx.ForEachRow(rows, []any{&o, &st}, func() error { r.decided[o] = st; return nil })
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
	return r, tx.Read(ctx, b)
}

// writes is what a batch changes, set-based.
type writes struct {
	delta                                   map[string]int // item → units moved from available to reserved (negative: released)
	resIDs, resOrders, resStatus, resReason []string
	itemRes, itemIDs                        []string
	itemQty                                 []int32
	released                                []string
	events                                  []event.Envelope
}

// plan decides the events in order against what read found, as if they were applied one by one:
// a duplicate event, or a second order.created for a decided order, changes nothing; a reservation
// made earlier in the batch can be released by a later payment.failed or delivery.cancelled. It
// updates r (stock, decided orders, live reservations) as it goes.
func (s *store) plan(es []event.Envelope, created map[int]event.OrderCreatedPayload, r *batchReads) ([]outcome, writes, error) {
	outs := make([]outcome, len(es))
	w := writes{delta: map[string]int{}}
	for i, e := range es {
		switch {
		case !relevant(e):
			continue // outs[i] stays zero: ignored
		case !r.fresh[e.EventID]:
			outs[i] = outcome{duplicate: true, result: "duplicate"}
			continue
		}
		var err error
		if e.EventType == event.OrderCreated {
			outs[i], err = s.planReserve(e, created[i], r, &w)
		} else {
			outs[i], err = s.planRelease(e, r, &w)
		}
		if err != nil {
			return nil, writes{}, err
		}
	}
	return outs, w, nil
}

func (s *store) planReserve(e event.Envelope, p event.OrderCreatedPayload, r *batchReads, w *writes) (outcome, error) {
	switch r.decided[e.OrderID] {
	case "":
	case StatusCancelled:
		return outcome{result: "cancelled"}, nil // cancelled before it got here: nothing to reserve
	default:
		return outcome{duplicate: true, result: "duplicate"}, nil
	}
	lines := aggregate(p.Items)
	resID := event.NewID()
	d := decide(e.OrderID, p, lines, r.avail, resID)
	r.decided[e.OrderID] = d.status
	if d.status == StatusReserved {
		held := &live{resID: resID}
		for _, l := range lines {
			r.avail[l.itemID] -= l.qty
			w.delta[l.itemID] += l.qty
			w.itemRes, w.itemIDs, w.itemQty = append(w.itemRes, resID), append(w.itemIDs, l.itemID), append(w.itemQty, int32(l.qty)) //nolint:gosec // event.MaxQuantity bounds qty
			held.items = append(held.items, heldItem{l.itemID, l.qty})
		}
		r.releasable[e.OrderID] = held // a later payment.failed in this batch releases it
	}
	w.resIDs, w.resOrders = append(w.resIDs, resID), append(w.resOrders, e.OrderID)
	w.resStatus, w.resReason = append(w.resStatus, d.status), append(w.resReason, d.reason)
	out, err := s.factory.Caused(e, d.typ, d.payload)
	if err != nil {
		return outcome{}, err
	}
	w.events = append(w.events, out)
	if d.status == StatusRejected {
		return outcome{result: "rejected", reason: d.reason}, nil
	}
	return outcome{result: "reserved"}, nil
}

func (s *store) planRelease(e event.Envelope, r *batchReads, w *writes) (outcome, error) {
	l := r.releasable[e.OrderID]
	switch {
	case l == nil && e.EventType == event.DeliveryCancelled && r.decided[e.OrderID] == "":
		// Cancelled before its order.created got here: a CANCELLED reservation holds the order's
		// place, so the order.created that follows reserves nothing.
		r.decided[e.OrderID] = StatusCancelled
		w.resIDs, w.resOrders = append(w.resIDs, event.NewID()), append(w.resOrders, e.OrderID)
		w.resStatus, w.resReason = append(w.resStatus, StatusCancelled), append(w.resReason, event.ReasonOrderCancelled)
		return outcome{result: "cancelled"}, nil
	case l == nil:
		return outcome{result: "ignored"}, nil // nothing held: rejected, or released before
	}
	delete(r.releasable, e.OrderID) // a second payment.failed releases nothing
	for _, h := range l.items {
		r.avail[h.item] += h.qty
		w.delta[h.item] -= h.qty
	}
	w.released = append(w.released, l.resID)
	p := event.InventoryReleasedPayload{OrderID: e.OrderID, ReservationID: l.resID, Reason: releaseReason(e)}
	if e.EventType == event.DeliveryCancelled {
		c, err := event.DecodePayload[event.CancellationPayload](e)
		if err != nil {
			return outcome{}, err
		}
		p.CancelReason = c.Reason // payment-service refunds with it
	}
	out, err := s.factory.Caused(e, event.InventoryReleased, p)
	if err != nil {
		return outcome{}, err
	}
	w.events = append(w.events, out)
	return outcome{result: "released"}, nil
}

// queue appends the writes to b, one statement per table whatever the batch held.
func (w writes) queue(b *pgx.Batch, now time.Time) {
	var dItems []string
	var dQty []int32
	for it, q := range w.delta {
		if q != 0 {
			dItems, dQty = append(dItems, it), append(dQty, int32(q)) //nolint:gosec // a sum of validated line quantities of one batch
		}
	}
	if len(dItems) > 0 {
		b.Queue(`UPDATE stock SET available = available - u.q, reserved = reserved + u.q, updated_at = $3
			FROM unnest($1::text[], $2::int[]) AS u(item_id, q) WHERE stock.item_id = u.item_id`, dItems, dQty, now)
	}
	if len(w.resIDs) > 0 {
		b.Queue(`INSERT INTO reservations (reservation_id, order_id, status, reason, created_at)
			SELECT r, o, s, NULLIF(x, ''), $5 FROM unnest($1::text[]::uuid[], $2::text[], $3::text[], $4::text[]) AS u(r, o, s, x)`,
			w.resIDs, w.resOrders, w.resStatus, w.resReason, now)
	}
	if len(w.itemRes) > 0 {
		b.Queue(`INSERT INTO reservation_items (reservation_id, item_id, quantity) SELECT * FROM unnest($1::text[]::uuid[], $2::text[], $3::int[])`,
			w.itemRes, w.itemIDs, w.itemQty)
	}
	if len(w.released) > 0 {
		b.Queue(`UPDATE reservations SET status = 'RELEASED', released_at = $2 WHERE reservation_id = ANY($1::text[]::uuid[])`, w.released, now)
	}
}
