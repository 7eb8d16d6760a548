package order

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/obs"
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
	// Cancellation is set once a cancellation was asked for (see Status for whether it took effect).
	Cancellation *Cancellation `json:"cancellation,omitempty"`
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
// Without a key, everything goes out in one round trip; with one, the key is inserted first (a
// concurrent request with the same key waits for this transaction, then sees the committed row).
func (s *store) create(ctx context.Context, o newOrder, idemKey string) (ord Order, replayed bool, err error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	created := Order{OrderID: event.NewID(), CustomerID: o.CustomerID, TotalAmount: o.Total, Currency: o.Currency,
		Status: "CREATED", CreatedAt: now, Items: o.Items}
	err = pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		ord, replayed = created, false
		if idemKey != "" {
			existing, err := claimKey(ctx, tx, idemKey, o.hash(), ord.OrderID)
			if err != nil {
				return err
			}
			if existing != "" {
				replayed = true
				ord, err = readOrder(ctx, tx.Read, existing)
				return err
			}
		}
		e, err := s.queueInsert(&tx.Writes, ord)
		if err != nil {
			return err
		}
		e.Trace.Parent, e.Trace.State = obs.TraceOf(ctx) // the request's span: the saga's root
		return outbox.Caused(tx, e)
	})
	if err != nil {
		return Order{}, false, fmt.Errorf("create order: %w", err)
	}
	obs.TagOrder(ctx, ord.OrderID)
	return ord, replayed, nil
}

// claimKey inserts the idempotency key for orderID. When the key exists it returns the order it
// names, or ErrIdempotencyMismatch when it was used with a different request.
func claimKey(ctx context.Context, tx *pg.BatchTx, key string, hash []byte, orderID string) (existing string, err error) {
	var storedHash []byte
	b := &pgx.Batch{}
	// The key's foreign key to orders is checked at commit (DEFERRABLE): the order follows.
	b.Queue(`INSERT INTO idempotency_keys (idem_key, request_hash, order_id) VALUES ($1, $2, $3) ON CONFLICT (idem_key) DO NOTHING`,
		key, hash, orderID)
	b.Queue(`SELECT request_hash, order_id::text FROM idempotency_keys WHERE idem_key = $1 AND order_id <> $2`, key, orderID).
		Query(func(rows pgx.Rows) error {
			_, err := pgx.ForEachRow(rows, []any{&storedHash, &existing}, func() error { return nil })
			return err
		})
	if err := tx.Read(ctx, b); err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	if existing != "" && string(storedHash) != string(hash) {
		return "", ErrIdempotencyMismatch
	}
	return existing, nil
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
	return readOrder(ctx, func(ctx context.Context, b *pgx.Batch) error { return s.pool.SendBatch(ctx, b).Close() }, id)
}

// readOrder reads an order and its items in one round trip, through send (a pool's or a
// transaction's).
func readOrder(ctx context.Context, send func(context.Context, *pgx.Batch) error, id string) (Order, error) {
	var o Order
	var cReason, cComment *string
	var cAt *time.Time
	found := false
	b := &pgx.Batch{}
	b.Queue(`SELECT order_id::text, customer_id, currency, total_amount, status, created_at, cancel_reason, cancel_comment, cancel_requested_at
		FROM orders WHERE order_id = $1`, id).
		Query(func(rows pgx.Rows) error {
			_, err := pgx.ForEachRow(rows, []any{&o.OrderID, &o.CustomerID, &o.Currency, &o.TotalAmount, &o.Status, &o.CreatedAt,
				&cReason, &cComment, &cAt}, func() error { found = true; return nil })
			return err
		})
	b.Queue(`SELECT item_id, quantity, unit_price FROM order_items WHERE order_id = $1 ORDER BY line_no`, id).
		Query(func(rows pgx.Rows) (err error) {
			o.Items, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (event.Item, error) {
				var it event.Item
				return it, r.Scan(&it.ItemID, &it.Quantity, &it.UnitPrice)
			})
			return err
		})
	if err := send(ctx, b); err != nil {
		return Order{}, fmt.Errorf("read order: %w", err)
	}
	if !found {
		return Order{}, ErrNotFound
	}
	o.CreatedAt = o.CreatedAt.UTC()
	if cReason != nil && cAt != nil {
		o.Cancellation = &Cancellation{Reason: *cReason, RequestedAt: cAt.UTC()}
		if cComment != nil {
			o.Cancellation.Comment = *cComment
		}
	}
	return o, nil
}
