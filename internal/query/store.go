package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

// View is the tracked order as GET /api/orders/{orderId} returns it. Pointer fields are null until
// the event that sets them has been applied.
type View struct {
	OrderID               string       `json:"orderId"`
	CustomerID            string       `json:"customerId,omitempty"`
	TotalAmount           *event.Money `json:"totalAmount"`
	Currency              string       `json:"currency,omitempty"`
	Status                string       `json:"status"`
	CreatedAt             *time.Time   `json:"createdAt"`
	UpdatedAt             *time.Time   `json:"updatedAt"`
	PaymentID             *int64       `json:"paymentId"`
	DeliveryID            string       `json:"deliveryId,omitempty"`
	DriverName            string       `json:"driverName,omitempty"`
	EstimatedDeliveryTime *time.Time   `json:"estimatedDeliveryTime"`
	ReservationID         string       `json:"reservationId,omitempty"`
	RejectionReason       string       `json:"rejectionReason,omitempty"`
	FailureReason         string       `json:"failureReason,omitempty"`
	DeliveredAt           *time.Time   `json:"deliveredAt,omitempty"`
	// WaitingSince is when the order began waiting for a free driver (delivery.waiting); it stays
	// after the assignment. With status PAYMENT_AUTHORIZED it means the order is waiting now.
	WaitingSince *time.Time `json:"waitingSince,omitempty"`
	// CancelReason and CancelledAt are set once the cancellation took effect (status CANCELLED);
	// RefundedAt once the payment was refunded.
	CancelReason string     `json:"cancelReason,omitempty"`
	CancelledAt  *time.Time `json:"cancelledAt,omitempty"`
	RefundedAt   *time.Time `json:"refundedAt,omitempty"`
	LastEventAt  *time.Time `json:"lastEventAt"`
}

// ErrNotFound: no view for the order (no event of it applied yet).
var ErrNotFound = errors.New("order not found in the read model")

// Store is the read model. Apply must be idempotent and commutative (see Fold); every
// implementation passes the same contract tests.
type Store interface {
	Apply(ctx context.Context, m Mutation) error
	Get(ctx context.Context, orderID string) (View, error)
	History(ctx context.Context, orderID string) ([]HistoryEntry, error)
	// ListByCustomer returns a customer's orders, newest first, and the cursor of the next page
	// (empty after the last). A cursor is the store's own position (paging state, last key): the
	// HTTP layer seals it before a client sees it, so a cursor given back is one the store made.
	ListByCustomer(ctx context.Context, customerID string, limit int, cursor []byte) ([]View, []byte, error)
	// List scans all orders in storage order, a page at a time, with a cursor as ListByCustomer.
	List(ctx context.Context, limit int, cursor []byte) ([]View, []byte, error)
}

// setField copies one field value into v.
func setField(v *View, field string, val any) {
	switch field {
	case FCustomerID:
		v.CustomerID, _ = val.(string)
	case FTotalAmount:
		if m, ok := val.(event.Money); ok {
			v.TotalAmount = &m
		}
	case FCurrency:
		v.Currency, _ = val.(string)
	case FCreatedAt:
		v.CreatedAt = timePtr(val)
	case FStatus:
		v.Status, _ = val.(string)
	case FUpdatedAt:
		v.UpdatedAt = timePtr(val)
	case FReservationID:
		v.ReservationID, _ = val.(string)
	case FRejectionReason:
		v.RejectionReason, _ = val.(string)
	case FPaymentID:
		if n, ok := val.(int64); ok {
			v.PaymentID = &n
		}
	case FFailureReason:
		v.FailureReason, _ = val.(string)
	case FDeliveryID:
		v.DeliveryID, _ = val.(string)
	case FDriverName:
		v.DriverName, _ = val.(string)
	case FETA:
		v.EstimatedDeliveryTime = timePtr(val)
	case FDeliveredAt:
		v.DeliveredAt = timePtr(val)
	case FWaitingSince:
		v.WaitingSince = timePtr(val)
	case FCancelReason:
		v.CancelReason, _ = val.(string)
	case FCancelledAt:
		v.CancelledAt = timePtr(val)
	case FRefundedAt:
		v.RefundedAt = timePtr(val)
	case FLastEventAt:
		v.LastEventAt = timePtr(val)
	}
}

func timePtr(val any) *time.Time {
	if t, ok := val.(time.Time); ok {
		t = t.UTC().Truncate(time.Millisecond) // Cassandra timestamps have millisecond precision
		return &t
	}
	return nil
}

// Memory is an in-memory Store with the same last-writer-wins semantics as Cassandra: per field,
// the highest timestamp wins, and on a tie the greater value (compared as text) wins, as Cassandra
// does. Safe for concurrent use.
type Memory struct {
	mu        sync.RWMutex
	cells     map[string]map[string]cell
	history   map[string]map[string]HistoryEntry
	customers map[string]map[string]CustomerEntry
}

type cell struct {
	ts  int64
	val any
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{cells: map[string]map[string]cell{}, history: map[string]map[string]HistoryEntry{},
		customers: map[string]map[string]CustomerEntry{}}
}

func valueText(v any) string {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case event.Money:
		return x.String()
	case int64:
		return fmt.Sprintf("%020d", x)
	case string:
		return x
	}
	return ""
}

// Apply implements Store.
func (m *Memory) Apply(_ context.Context, mu Mutation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	row := m.cells[mu.OrderID]
	if row == nil {
		row = map[string]cell{}
		m.cells[mu.OrderID] = row
	}
	for _, w := range mu.Writes {
		for f, v := range w.Values {
			old, ok := row[f]
			if !ok || w.Timestamp > old.ts || (w.Timestamp == old.ts && valueText(v) > valueText(old.val)) {
				row[f] = cell{ts: w.Timestamp, val: v}
			}
		}
	}
	h := m.history[mu.OrderID]
	if h == nil {
		h = map[string]HistoryEntry{}
		m.history[mu.OrderID] = h
	}
	h[mu.History.EventID] = mu.History
	if c := mu.Customer; c != nil {
		if m.customers[c.CustomerID] == nil {
			m.customers[c.CustomerID] = map[string]CustomerEntry{}
		}
		m.customers[c.CustomerID][c.OrderID] = *c
	}
	return nil
}

func (m *Memory) view(id string) (View, bool) {
	row, ok := m.cells[id]
	if !ok {
		return View{}, false
	}
	v := View{OrderID: id}
	for f, c := range row {
		setField(&v, f, c.val)
	}
	return v, true
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, id string) (View, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.view(id)
	if !ok {
		return View{}, ErrNotFound
	}
	return v, nil
}

// History implements Store.
func (m *Memory) History(_ context.Context, id string) ([]HistoryEntry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []HistoryEntry
	for _, h := range m.history[id] {
		out = append(out, h)
	}
	sortHistory(out)
	return out, nil
}

func sortHistory(h []HistoryEntry) {
	slices.SortFunc(h, func(a, b HistoryEntry) int {
		if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
			return c
		}
		return strings.Compare(a.EventID, b.EventID)
	})
}

// ListByCustomer implements Store; the cursor is the last order id returned.
func (m *Memory) ListByCustomer(_ context.Context, customerID string, limit int, cursor []byte) ([]View, []byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var entries []CustomerEntry
	for _, c := range m.customers[customerID] {
		entries = append(entries, c)
	}
	slices.SortFunc(entries, func(a, b CustomerEntry) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.OrderID, a.OrderID)
	})
	return page(m, entries, func(c CustomerEntry) string { return c.OrderID }, limit, cursor)
}

// List implements Store, in order id order.
func (m *Memory) List(_ context.Context, limit int, cursor []byte) ([]View, []byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]string, 0, len(m.cells))
	for id := range m.cells {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return page(m, ids, func(s string) string { return s }, limit, cursor)
}

func page[T any](m *Memory, items []T, id func(T) string, limit int, cursor []byte) ([]View, []byte, error) {
	start := 0
	if len(cursor) > 0 {
		start = slices.IndexFunc(items, func(t T) bool { return id(t) == string(cursor) }) + 1
	}
	var out []View
	var next []byte
	for i := start; i < len(items); i++ {
		if len(out) == limit {
			next = []byte(id(items[i-1]))
			break
		}
		if v, ok := m.view(id(items[i])); ok {
			out = append(out, v)
		}
	}
	return out, next, nil
}
