package inventory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/catalog"
	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/inbox"
)

// Reservation statuses.
const (
	StatusReserved = "RESERVED"
	StatusRejected = "REJECTED"
	// StatusCancelled holds the place of an order cancelled before its order.created arrived.
	StatusCancelled = "CANCELLED"
	StatusReleased  = "RELEASED"
)

// Item is one stock row as the admin API shows it.
type Item struct {
	ItemID    string    `json:"itemId"`
	Name      string    `json:"name"`
	Available int       `json:"available"`
	Reserved  int       `json:"reserved"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// ErrNotFound: no such item.
var ErrNotFound = errors.New("item not found")

// outcome says what a handler did, for metrics after commit.
type outcome struct {
	duplicate bool
	result    string // reserved, rejected, released, ignored
	reason    string
}

type store struct {
	pool    *pgxpool.Pool
	inbox   *inbox.Inbox
	factory event.Factory
	now     func() time.Time
}

type line struct {
	itemID string
	qty    int
}

// aggregate sums quantities per item and sorts by item id, so rows are always locked in the same
// order (no deadlocks between concurrent reservations).
func aggregate(items []event.Item) []line {
	m := map[string]int{}
	for _, it := range items {
		m[it.ItemID] += it.Quantity
	}
	out := make([]line, 0, len(m))
	for id, q := range m {
		out = append(out, line{id, q})
	}
	slices.SortFunc(out, func(a, b line) int {
		if a.itemID < b.itemID {
			return -1
		}
		if a.itemID > b.itemID {
			return 1
		}
		return 0
	})
	return out
}

// decision is what the reservation rule says about one order.
type decision struct {
	typ     event.Type // inventory.reserved or inventory.rejected
	status  string     // RESERVED or REJECTED
	reason  string     // rejection reason, "" when reserved
	payload event.InventoryPayload
}

// decide applies the rule — every line or none — to avail (item → free units): an unknown item
// rejects with UNKNOWN_ITEM, else any line short of stock rejects with INSUFFICIENT_STOCK, naming
// the offending lines. It changes nothing; the caller applies a reservation.
func decide(orderID string, p event.OrderCreatedPayload, lines []line, avail map[string]int, resID string) decision {
	var unknown, short []event.RejectedItem
	for _, l := range lines {
		a, ok := avail[l.itemID]
		switch {
		case !ok:
			unknown = append(unknown, event.RejectedItem{ItemID: l.itemID, Requested: l.qty})
		case a < l.qty:
			short = append(short, event.RejectedItem{ItemID: l.itemID, Requested: l.qty, Available: a})
		}
	}
	d := decision{typ: event.InventoryReserved, status: StatusReserved, payload: event.InventoryPayload{
		OrderID: orderID, Amount: p.TotalAmount, Currency: p.Currency, CustomerID: p.CustomerID, ReservationID: resID}}
	switch {
	case len(unknown) > 0:
		d.typ, d.status, d.reason, d.payload.Items = event.InventoryRejected, StatusRejected, event.ReasonUnknownItem, unknown
	case len(short) > 0:
		d.typ, d.status, d.reason, d.payload.Items = event.InventoryRejected, StatusRejected, event.ReasonInsufficientStock, short
	}
	d.payload.Reason = d.reason
	return d
}

// seed inserts catalog items that do not exist yet; existing stock is never reset by a restart.
func (s *store) seed(ctx context.Context, items []catalog.Item) error {
	ids, names, stock := make([]string, len(items)), make([]string, len(items)), make([]int32, len(items))
	for i, it := range items {
		ids[i], names[i], stock[i] = it.ItemID, it.Name, int32(it.Stock) //nolint:gosec // catalog.Load bounds stock by catalog.MaxStock
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO stock (item_id, name, available, on_hand)
		SELECT i, n, s, s FROM unnest($1::text[], $2::text[], $3::int[]) AS u(i, n, s) ON CONFLICT (item_id) DO NOTHING`, ids, names, stock)
	if err != nil {
		return fmt.Errorf("seed catalog: %w", err)
	}
	return nil
}

func (s *store) item(ctx context.Context, id string) (Item, error) {
	var it Item
	err := s.pool.QueryRow(ctx, `SELECT item_id, name, available, reserved, updated_at FROM stock WHERE item_id = $1`, id).
		Scan(&it.ItemID, &it.Name, &it.Available, &it.Reserved, &it.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return it, ErrNotFound
	}
	it.UpdatedAt = it.UpdatedAt.UTC()
	return it, err
}

// setAvailable sets the free units of an item, creating it when unknown.
func (s *store) setAvailable(ctx context.Context, id string, available int) (Item, error) {
	var it Item
	err := s.pool.QueryRow(ctx, `INSERT INTO stock (item_id, name, available, on_hand) VALUES ($1, $1, $2, $2)
		ON CONFLICT (item_id) DO UPDATE SET available = EXCLUDED.available, on_hand = EXCLUDED.available + stock.reserved, updated_at = now()
		RETURNING item_id, name, available, reserved, updated_at`, id, available).
		Scan(&it.ItemID, &it.Name, &it.Available, &it.Reserved, &it.UpdatedAt)
	it.UpdatedAt = it.UpdatedAt.UTC()
	return it, err
}

// list returns up to limit items with item_id > after, in item_id order.
func (s *store) list(ctx context.Context, after string, limit int) ([]Item, error) {
	rows, err := s.pool.Query(ctx, `SELECT item_id, name, available, reserved, updated_at FROM stock
		WHERE item_id > $1 ORDER BY item_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) {
		var it Item
		err := r.Scan(&it.ItemID, &it.Name, &it.Available, &it.Reserved, &it.UpdatedAt)
		it.UpdatedAt = it.UpdatedAt.UTC()
		return it, err
	})
}
