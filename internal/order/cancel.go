package order

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// Cancellation is a cancellation asked for: by the customer (CUSTOMER_REQUEST) or by the deadline
// sweeper (DEADLINE_EXCEEDED). The order's status says whether it took effect: CANCELLED once
// delivery-service accepted it; a cancellation that came too late leaves the status as it was.
type Cancellation struct {
	Reason      string    `json:"reason"`
	Comment     string    `json:"comment,omitempty"`
	RequestedAt time.Time `json:"requestedAt"`
}

// Errors of cancel.
var (
	// ErrTooLate: order-service already knows the order was delivered.
	ErrTooLate = errors.New("the order was delivered: too late to cancel")
	// ErrEnded: the order already ended without a delivery (rejected or declined): nothing to cancel.
	ErrEnded = errors.New("the order has already ended")
)

// cancelRequest is the optional body of POST /api/orders/{orderId}/cancel.
type cancelRequest struct {
	Comment string `json:"comment"`
}

// cancel answers POST /api/orders/{orderId}/cancel: 202 with the order and its cancellation, the
// same for a repeated request (the first request's cancellation); 404 for an unknown order; 409
// when order-service already knows it is too late (delivered) or the order ended otherwise.
func (a *api) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("orderId")
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "orderId must be a UUID"))
		return
	}
	var req cancelRequest
	if r.ContentLength != 0 { // the body is optional
		if p := httpx.DecodeJSON(w, r, a.limits.MaxBodyBytes, &req); p != nil {
			httpx.WriteProblem(w, r, p)
			return
		}
	}
	if len(req.Comment) > event.MaxCommentLen || !utf8.ValidString(req.Comment) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "the cancellation is invalid",
			httpx.FieldError{Field: "comment", Message: fmt.Sprintf("must be valid UTF-8 of at most %d bytes", event.MaxCommentLen)}))
		return
	}
	o, err := a.store.cancel(r.Context(), id, req.Comment)
	switch {
	case errors.Is(err, ErrNotFound):
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no order "+id))
	case errors.Is(err, ErrTooLate), errors.Is(err, ErrEnded):
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusConflict, fmt.Sprintf("%v (status %s)", err, o.Status)))
	case err != nil:
		httpx.Unavailable(w, r, a.log, "order store", err)
	default:
		w.Header().Set("Location", "/api/orders/"+id)
		httpx.WriteJSON(w, http.StatusAccepted, o)
	}
}

// cancellable reports whether a cancellation may still be asked for an order in status: not once
// order-service knows it ended.
func cancellable(status string) error {
	switch status {
	case event.OrderStatusDelivered:
		return ErrTooLate
	case event.OrderStatusInventoryRejected, event.OrderStatusPaymentFailed:
		return ErrEnded
	}
	return nil
}

// cancel asks for the cancellation of order id by the customer: the order gets its cancellation and
// order.cancelled is written in one transaction. A repeated request changes nothing and returns the
// order with the first cancellation. The row lock serialises concurrent requests and the tracker.
func (s *store) cancel(ctx context.Context, id, comment string) (Order, error) {
	var o Order
	err := pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		b := &pgx.Batch{}
		b.Queue(`SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE`, id)
		if err := tx.Read(ctx, b); err != nil {
			return fmt.Errorf("lock order: %w", err)
		}
		var err error
		if o, err = readOrder(ctx, tx.Read, id); err != nil {
			return err
		}
		if o.Cancellation != nil {
			return nil // asked before: the same answer
		}
		if err := cancellable(o.Status); err != nil {
			return err
		}
		o.Cancellation = &Cancellation{Reason: event.ReasonCustomerRequest, Comment: comment,
			RequestedAt: s.now().UTC().Truncate(time.Microsecond)}
		return s.queueCancel(ctx, tx, []Order{o})
	})
	if err != nil && !errors.Is(err, ErrTooLate) && !errors.Is(err, ErrEnded) && !errors.Is(err, ErrNotFound) {
		return o, fmt.Errorf("cancel order: %w", err)
	}
	return o, err
}

// queueCancel records the orders' cancellations and writes their order.cancelled events. Asked by
// a request or a timer, not caused by an event, they take the table door: they follow whatever the
// order has in the outbox.
func (s *store) queueCancel(ctx context.Context, tx *pg.BatchTx, os []Order) error {
	events := make([]event.Envelope, 0, len(os))
	for _, o := range os {
		c := o.Cancellation
		tx.Writes.Queue(`UPDATE orders SET cancel_reason = $2, cancel_comment = NULLIF($3, ''), cancel_requested_at = $4 WHERE order_id = $1`,
			o.OrderID, c.Reason, c.Comment, c.RequestedAt)
		e, err := s.factory.New(event.OrderCancelled, o.OrderID, event.OrderCancelledPayload{OrderID: o.OrderID, Reason: c.Reason, Comment: c.Comment})
		if err != nil {
			return err
		}
		e.OccurredAt = c.RequestedAt
		e.Trace.Parent, e.Trace.State = obs.TraceOf(ctx) // the request's, when a customer asked
		events = append(events, e)
	}
	return outbox.Timed(tx, events...)
}

// expire cancels up to limit orders created before deadline that have not reached
// DELIVERY_ASSIGNED (as far as order-service knows) and were not cancelled before, with reason
// DEADLINE_EXCEEDED; it returns how many. SKIP LOCKED lets every replica sweep at once: each takes
// other orders, and an order a request is cancelling is left to that request.
func (s *store) expire(ctx context.Context, deadline time.Time, limit int) (int, error) {
	var due []Order
	err := pg.InBatchTx(ctx, s.pool, func(tx *pg.BatchTx) error {
		due = due[:0]
		b := &pgx.Batch{}
		b.Queue(`SELECT order_id::text FROM orders
			WHERE status IN ('CREATED', 'INVENTORY_RESERVED', 'PAYMENT_AUTHORIZED') AND cancel_requested_at IS NULL AND created_at < $1
			ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED`, deadline, limit).Query(func(rows pgx.Rows) error {
			var id string
			_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
				due = append(due, Order{OrderID: id, Cancellation: &Cancellation{Reason: event.ReasonDeadlineExceeded,
					RequestedAt: s.now().UTC().Truncate(time.Microsecond)}})
				return nil
			})
			return err
		})
		if err := tx.Read(ctx, b); err != nil {
			return fmt.Errorf("find expired orders: %w", err)
		}
		return s.queueCancel(ctx, tx, due)
	})
	if err != nil {
		return 0, fmt.Errorf("expire orders: %w", err)
	}
	return len(due), nil
}
