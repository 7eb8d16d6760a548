// Package query is the query-api: it folds every event of the saga into a read model (each order's
// view and timeline, orders by customer) and serves it over HTTP and Server-Sent Events.
//
// The fold is last-writer-wins per field with write timestamps derived from the event, never from
// the processing time: a field carries the value of the event with the highest timestamp that wrote
// it. Status timestamps are rank·10^17 + occurredAt (µs), so a higher-ranked status always wins and
// status never moves backwards; other fields use occurredAt, so an older eta.updated never replaces a
// newer one. The result depends only on the set of events, not on their order, their duplicates or
// how many projectors applied them concurrently, and needs no read-modify-write.
package query

import (
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

// Order statuses of the read model (see event.StatusOf for their ranks).
const (
	StatusCreated           = event.OrderStatusCreated
	StatusInventoryReserved = event.OrderStatusInventoryReserved
	StatusInventoryRejected = event.OrderStatusInventoryRejected
	StatusPaymentAuthorized = event.OrderStatusPaymentAuthorized
	StatusPaymentFailed     = event.OrderStatusPaymentFailed
	StatusDeliveryAssigned  = event.OrderStatusDeliveryAssigned
	StatusDelivered         = event.OrderStatusDelivered
	StatusCancelled         = event.OrderStatusCancelled
)

// Terminal reports whether no further status change is expected (event.TerminalStatus).
func Terminal(status string) bool { return event.TerminalStatus(status) }

const rankStep = int64(100_000_000_000_000_000) // 1e17 µs ≈ 3170 years: room for any occurredAt

// Field names of the view, shared by both stores (they are the Cassandra column names).
const (
	FCustomerID      = "customer_id"
	FTotalAmount     = "total_amount"
	FCurrency        = "currency"
	FCreatedAt       = "created_at"
	FStatus          = "status"
	FUpdatedAt       = "updated_at"
	FReservationID   = "reservation_id"
	FRejectionReason = "rejection_reason"
	FPaymentID       = "payment_id"
	FFailureReason   = "failure_reason"
	FDeliveryID      = "delivery_id"
	FDriverName      = "driver_name"
	FETA             = "estimated_delivery_time"
	FDeliveredAt     = "delivered_at"
	FWaitingSince    = "waiting_since"
	FCancelReason    = "cancel_reason"
	FCancelledAt     = "cancelled_at"
	FRefundedAt      = "refunded_at"
	FLastEventAt     = "last_event_at"
)

// Write sets some fields of one order's view at one write timestamp.
type Write struct {
	Timestamp int64          // microseconds-like LWW timestamp
	Values    map[string]any // field → value (string, int64, event.Money, time.Time)
}

// Mutation is everything one event contributes to the read model.
type Mutation struct {
	OrderID string
	Writes  []Write
	History HistoryEntry
	// Customer is set for order.created: the row of the orders-by-customer listing.
	Customer *CustomerEntry
}

// HistoryEntry is one row of an order's timeline.
type HistoryEntry struct {
	OrderID    string    `json:"-"`
	EventID    string    `json:"eventId"`
	EventType  string    `json:"eventType"`
	OccurredAt time.Time `json:"occurredAt"`
	Producer   string    `json:"producer"`
	Payload    string    `json:"-"`
	Summary    string    `json:"summary"`
}

// CustomerEntry is one row of the orders-by-customer listing.
type CustomerEntry struct {
	CustomerID string
	CreatedAt  time.Time
	OrderID    string
}

func micros(t time.Time) int64 { return t.UnixMicro() }

// Fold turns an event into a Mutation. Unknown event types contribute only their history row.
// It returns an error wrapping event.ErrInvalid for a payload that does not decode.
func Fold(e event.Envelope) (Mutation, error) {
	occ := e.OccurredAt.UTC()
	ts := micros(occ)
	m := Mutation{OrderID: e.OrderID, History: HistoryEntry{OrderID: e.OrderID, EventID: e.EventID,
		EventType: string(e.EventType), OccurredAt: occ, Producer: e.Producer, Payload: string(e.Payload)}}
	fields := map[string]any{FLastEventAt: occ}
	switch e.EventType {
	case event.OrderCreated:
		p, err := event.DecodePayload[event.OrderCreatedPayload](e)
		if err != nil {
			return m, err
		}
		fields[FCustomerID], fields[FTotalAmount], fields[FCurrency], fields[FCreatedAt] = p.CustomerID, p.TotalAmount, p.Currency, occ
		m.Customer = &CustomerEntry{CustomerID: p.CustomerID, CreatedAt: occ, OrderID: e.OrderID}
		m.History.Summary = "order placed: " + p.TotalAmount.String() + " " + p.Currency
	case event.InventoryReserved, event.InventoryRejected:
		p, err := event.DecodePayload[event.InventoryPayload](e)
		if err != nil {
			return m, err
		}
		fields[FCustomerID], fields[FTotalAmount], fields[FCurrency] = p.CustomerID, p.Amount, p.Currency
		if p.ReservationID != "" {
			fields[FReservationID] = p.ReservationID
		}
		m.History.Summary = "stock reserved"
		if e.EventType == event.InventoryRejected {
			fields[FRejectionReason] = p.Reason
			m.History.Summary = "stock rejected: " + p.Reason
		}
	case event.InventoryReleased:
		p, err := event.DecodePayload[event.InventoryReleasedPayload](e)
		if err != nil {
			return m, err
		}
		m.History.Summary = "stock released: " + p.Reason
	case event.PaymentAuthorized, event.PaymentFailed:
		p, err := event.DecodePayload[event.PaymentPayload](e)
		if err != nil {
			return m, err
		}
		fields[FPaymentID], fields[FTotalAmount], fields[FCurrency] = p.PaymentID, p.Amount, p.Currency
		m.History.Summary = "payment authorized"
		if e.EventType == event.PaymentFailed {
			reason := ""
			if p.FailureReason != nil {
				reason = *p.FailureReason
			}
			fields[FFailureReason] = reason
			m.History.Summary = "payment declined: " + reason
		}
	case event.DeliveryAssigned, event.ETAUpdated, event.DeliveryCompleted:
		p, err := event.DecodePayload[event.DeliveryPayload](e)
		if err != nil {
			return m, err
		}
		fields[FDeliveryID], fields[FDriverName] = p.DeliveryID, p.DriverName
		switch e.EventType {
		case event.DeliveryAssigned:
			fields[FETA] = p.EstimatedDeliveryTime.UTC()
			m.History.Summary = "driver assigned: " + p.DriverName
		case event.ETAUpdated:
			fields[FETA] = p.EstimatedDeliveryTime.UTC()
			m.History.Summary = "ETA " + p.EstimatedDeliveryTime.UTC().Format(time.RFC3339)
		case event.DeliveryCompleted:
			fields[FDeliveredAt] = occ
			m.History.Summary = "delivered"
		}
	case event.DeliveryWaiting:
		p, err := event.DecodePayload[event.DeliveryWaitingPayload](e)
		if err != nil {
			return m, err
		}
		fields[FWaitingSince] = p.WaitingSince.UTC()
		m.History.Summary = "waiting for a free driver"
	case event.OrderCancelled:
		p, err := event.DecodePayload[event.OrderCancelledPayload](e)
		if err != nil {
			return m, err
		}
		m.History.Summary = "cancellation requested: " + p.Reason
		if p.Comment != "" {
			m.History.Summary += " (" + p.Comment + ")"
		}
	case event.DeliveryCancelled, event.CancellationRefused:
		p, err := event.DecodePayload[event.CancellationPayload](e)
		if err != nil {
			return m, err
		}
		if e.EventType == event.CancellationRefused {
			m.History.Summary = "cancellation refused: " + p.Refusal
			break
		}
		fields[FCancelReason], fields[FCancelledAt] = p.Reason, occ
		m.History.Summary = "cancelled: " + p.Reason
		if p.DriverName != "" {
			m.History.Summary += "; driver " + p.DriverName + " freed"
		}
	case event.PaymentRefunded:
		p, err := event.DecodePayload[event.PaymentRefundedPayload](e)
		if err != nil {
			return m, err
		}
		fields[FRefundedAt] = occ
		m.History.Summary = "payment refunded: " + p.Amount.String() + " " + p.Currency
	default:
		m.History.Summary = string(e.EventType)
	}
	m.Writes = append(m.Writes, Write{Timestamp: ts, Values: fields})
	if status, rank, ok := event.StatusOf(e.EventType); ok {
		m.Writes = append(m.Writes, Write{Timestamp: int64(rank)*rankStep + ts,
			Values: map[string]any{FStatus: status, FUpdatedAt: occ}})
	}
	return m, nil
}
