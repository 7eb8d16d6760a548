package order

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// Order is the write-side record served by GET /api/orders/{orderId}.
type Order struct {
	OrderID     string       `json:"orderId"`
	CustomerID  string       `json:"customerId"`
	TotalAmount event.Money  `json:"totalAmount"`
	Currency    string       `json:"currency"`
	Status      string       `json:"status"`
	CreatedAt   time.Time    `json:"createdAt"`
	Items       []event.Item `json:"items,omitempty"`
}

// ErrIdempotencyMismatch: the Idempotency-Key was used before with a different request.
var ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")

// ErrNotFound: no order with that id.
var ErrNotFound = errors.New("order not found")

type store struct {
	pool    *pgxpool.Pool
	factory event.Factory
	now     func() time.Time
}

// create stores the order, its items and order.created in one transaction. With an idempotency key
// it returns the original order instead when the key was seen with the same request (replayed=true).
func (s *store) create(ctx context.Context, o newOrder, idemKey string) (ord Order, replayed bool, err error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	ord = Order{OrderID: event.NewID(), CustomerID: o.CustomerID, TotalAmount: o.Total, Currency: o.Currency,
		Status: "CREATED", CreatedAt: now, Items: o.Items}
	if idemKey == "" {
		// Order, items and event in one round trip, with the relay's NOTIFY after the COMMIT: the
		// commit does not queue for Postgres's notify lock, and order.created, the first event of its
		// order, has no earlier event to keep its place behind (outbox.QueueRows).
		err := pg.InPipe(ctx, s.pool, func(p *pg.Pipe) (*pgx.Batch, error) {
			b := &pgx.Batch{}
			e, err := s.queueInsert(b, ord)
			if err != nil {
				return nil, err
			}
			return b, outbox.QueueAfterCommit(p, b, e)
		})
		if err != nil {
			return Order{}, false, fmt.Errorf("insert order: %w", err)
		}
		return ord, false, nil
	}
	err = pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		replayed = false
		// The key row is inserted first: a concurrent request with the same key waits here for this
		// transaction and then sees the committed row.
		tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (idem_key, request_hash, order_id)
			VALUES ($1, $2, $3) ON CONFLICT (idem_key) DO NOTHING`, idemKey, o.hash(), ord.OrderID)
		if err != nil {
			return fmt.Errorf("idempotency key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			var hash []byte
			var existing string
			if err := tx.QueryRow(ctx, `SELECT request_hash, order_id FROM idempotency_keys WHERE idem_key = $1`, idemKey).
				Scan(&hash, &existing); err != nil {
				return fmt.Errorf("idempotency key lookup: %w", err)
			}
			if string(hash) != string(o.hash()) {
				return ErrIdempotencyMismatch
			}
			replayed = true
			ord, err = getTx(ctx, tx, existing)
			return err
		}
		return s.insert(ctx, tx, ord) // the key's foreign key to orders is checked at commit (DEFERRABLE)
	})
	return ord, replayed, err
}

func (s *store) insert(ctx context.Context, tx pgx.Tx, ord Order) error {
	b := &pgx.Batch{}
	e, err := s.queueInsert(b, ord)
	if err != nil {
		return err
	}
	if err := outbox.Queue(b, e); err != nil { // NOTIFY inside the transaction: its COMMIT is the caller's
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	return nil
}

// queueInsert appends the order and its items to b and returns order.created, whose outbox row the
// caller queues after them.
func (s *store) queueInsert(b *pgx.Batch, ord Order) (event.Envelope, error) {
	b.Queue(`INSERT INTO orders (order_id, customer_id, currency, total_amount, created_at) VALUES ($1, $2, $3, $4, $5)`,
		ord.OrderID, ord.CustomerID, ord.Currency, ord.TotalAmount, ord.CreatedAt)
	for i, it := range ord.Items {
		b.Queue(`INSERT INTO order_items (order_id, line_no, item_id, quantity, unit_price) VALUES ($1, $2, $3, $4, $5)`,
			ord.OrderID, i+1, it.ItemID, it.Quantity, it.UnitPrice)
	}
	e, err := s.factory.New(event.OrderCreated, ord.OrderID, event.OrderCreatedPayload{
		CustomerID: ord.CustomerID, TotalAmount: ord.TotalAmount, Currency: ord.Currency, Items: ord.Items})
	if err != nil {
		return event.Envelope{}, err
	}
	e.OccurredAt = ord.CreatedAt
	return e, nil
}

func (s *store) get(ctx context.Context, id string) (Order, error) {
	var o Order
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) (err error) {
		o, err = getTx(ctx, tx, id)
		return err
	})
	return o, err
}

func getTx(ctx context.Context, tx pgx.Tx, id string) (Order, error) {
	var o Order
	err := tx.QueryRow(ctx, `SELECT order_id::text, customer_id, currency, total_amount, status, created_at FROM orders WHERE order_id = $1`, id).
		Scan(&o.OrderID, &o.CustomerID, &o.Currency, &o.TotalAmount, &o.Status, &o.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, ErrNotFound
	}
	if err != nil {
		return o, fmt.Errorf("read order: %w", err)
	}
	o.CreatedAt = o.CreatedAt.UTC()
	rows, err := tx.Query(ctx, `SELECT item_id, quantity, unit_price FROM order_items WHERE order_id = $1 ORDER BY line_no`, id)
	if err != nil {
		return o, fmt.Errorf("read items: %w", err)
	}
	o.Items, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (event.Item, error) {
		var it event.Item
		return it, r.Scan(&it.ItemID, &it.Quantity, &it.UnitPrice)
	})
	return o, err
}
