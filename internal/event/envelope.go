// Package event is the wire contract between the services: the envelope every Kafka record carries,
// the event types, their topics and their payloads (DESIGN.md §1).
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// SchemaVersion is the only envelope schema version this build understands.
const SchemaVersion = 1

// Type names an event; it is also the envelope's eventType and the eventType header.
type Type string

// Event types of the saga. Every type after the first eight is additive: consumers that do not know
// a type ignore it.
const (
	OrderCreated      Type = "order.created"
	InventoryReserved Type = "inventory.reserved"
	InventoryRejected Type = "inventory.rejected"
	InventoryReleased Type = "inventory.released"
	PaymentAuthorized Type = "payment.authorized"
	PaymentFailed     Type = "payment.failed"
	DeliveryAssigned  Type = "delivery.assigned"
	ETAUpdated        Type = "eta.updated"
	DeliveryCompleted Type = "delivery.completed"
	DeliveryWaiting   Type = "delivery.waiting"
	// The cancellation (docs/architecture.md): order-service asks, delivery-service decides (it owns
	// the cut-off, the delivery), payment and inventory undo what they hold once it was accepted.
	OrderCancelled      Type = "order.cancelled"
	DeliveryCancelled   Type = "delivery.cancelled"
	CancellationRefused Type = "cancellation.refused"
	PaymentRefunded     Type = "payment.refunded"
)

// Types lists every event type this build knows.
func Types() []Type {
	return []Type{OrderCreated, InventoryReserved, InventoryRejected, InventoryReleased,
		PaymentAuthorized, PaymentFailed, DeliveryAssigned, ETAUpdated, DeliveryCompleted, DeliveryWaiting,
		OrderCancelled, DeliveryCancelled, CancellationRefused, PaymentRefunded}
}

// Topic returns the topic an event type is published on, or "" for an unknown type.
func (t Type) Topic() string {
	switch t {
	case OrderCreated, OrderCancelled:
		return TopicOrders
	case InventoryReserved, InventoryRejected, InventoryReleased:
		return TopicInventory
	case PaymentAuthorized, PaymentFailed, PaymentRefunded:
		return TopicPayments
	case DeliveryAssigned, ETAUpdated, DeliveryCompleted, DeliveryWaiting, DeliveryCancelled, CancellationRefused:
		return TopicDelivery
	}
	return ""
}

// OpensOrder reports whether an event of this type is the first of its order: nothing of the order
// precedes it, so it needs no cause to keep its place.
func (t Type) OpensOrder() bool { return t == OrderCreated }

// Envelope is the whole value of every Kafka record. Payload stays raw so that a consumer can route on
// EventType before decoding it with DecodePayload.
type Envelope struct {
	EventID       string          `json:"eventId"`
	EventType     Type            `json:"eventType"`
	SchemaVersion int             `json:"schemaVersion"`
	OccurredAt    time.Time       `json:"occurredAt"`
	ProducedAt    time.Time       `json:"producedAt,omitzero"`
	OrderID       string          `json:"orderId"`
	CorrelationID string          `json:"correlationId"`
	CausationID   string          `json:"causationId,omitempty"`
	Producer      string          `json:"producer"`
	Payload       json.RawMessage `json:"payload"`
	// Trace is the W3C trace context the event was written in, empty when tracing is off. It is not
	// part of the JSON: it travels in the outbox row and in the record's headers (DESIGN.md §5).
	Trace Trace `json:"-"`
}

// Trace is a W3C trace context: the traceparent and tracestate header values.
type Trace struct{ Parent, State string }

// ErrInvalid marks an envelope or payload that can never be processed (a permanent error).
var ErrInvalid = errors.New("invalid event")

// MaxOrderIDLen bounds orderId (and every other identifier) so a hostile record cannot bloat keys.
const MaxOrderIDLen = 64

// Validate checks the fields every consumer relies on. It does not reject unknown event types:
// additive types must flow through consumers that do not know them.
func (e *Envelope) Validate() error {
	var errs []error
	if _, err := uuid.Parse(e.EventID); err != nil {
		errs = append(errs, fmt.Errorf("eventId %q is not a UUID", e.EventID))
	}
	if e.EventType == "" {
		errs = append(errs, errors.New("eventType is missing"))
	}
	if e.SchemaVersion != SchemaVersion {
		errs = append(errs, fmt.Errorf("unsupported schemaVersion %d (want %d)", e.SchemaVersion, SchemaVersion))
	}
	if e.OccurredAt.IsZero() {
		errs = append(errs, errors.New("occurredAt is missing"))
	}
	if e.OrderID == "" || len(e.OrderID) > MaxOrderIDLen {
		errs = append(errs, errors.New("orderId is missing or longer than 64 bytes"))
	}
	if len(e.Payload) == 0 || bytes.Equal(e.Payload, []byte("null")) {
		errs = append(errs, errors.New("payload is missing"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// Decode parses and validates a record value. Any error wraps ErrInvalid.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: not a JSON envelope: %w", ErrInvalid, err)
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// Encode marshals the envelope as a record value.
func (e *Envelope) Encode() ([]byte, error) { return json.Marshal(e) }

// Validator is implemented by payloads that check their own fields.
type Validator interface{ Validate() error }

// DecodePayload unmarshals the payload into T, rejecting unknown-to-JSON garbage and running T's
// Validate when it has one. Errors wrap ErrInvalid, so consumers can treat them as permanent.
func DecodePayload[T any](e Envelope) (T, error) {
	var p T
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return p, fmt.Errorf("%w: %s payload: %w", ErrInvalid, e.EventType, err)
	}
	if v, ok := any(&p).(Validator); ok {
		if err := v.Validate(); err != nil {
			return p, fmt.Errorf("%w: %s payload: %w", ErrInvalid, e.EventType, err)
		}
	}
	return p, nil
}

// Factory builds envelopes for one producer with an injectable clock and ID source, so tests and
// replays are reproducible.
type Factory struct {
	Producer string
	Now      func() time.Time // defaults to time.Now
	NewID    func() string    // defaults to NewID
}

// New builds the first event of a saga: correlationId is the orderId.
func (f Factory) New(t Type, orderID string, payload any) (Envelope, error) {
	return f.build(t, orderID, orderID, "", payload)
}

// Caused builds an event caused by cause: same order, correlationId copied, causationId = cause.EventID,
// and cause's trace context, so the saga stays one trace.
func (f Factory) Caused(cause Envelope, t Type, payload any) (Envelope, error) {
	corr := cause.CorrelationID
	if corr == "" {
		corr = cause.OrderID
	}
	e, err := f.build(t, cause.OrderID, corr, cause.EventID, payload)
	e.Trace = cause.Trace
	return e, err
}

func (f Factory) build(t Type, orderID, correlationID, causationID string, payload any) (Envelope, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s payload: %w", t, err)
	}
	now, newID := time.Now, NewID
	if f.Now != nil {
		now = f.Now
	}
	if f.NewID != nil {
		newID = f.NewID
	}
	return Envelope{
		EventID:       newID(),
		EventType:     t,
		SchemaVersion: SchemaVersion,
		OccurredAt:    now().UTC().Truncate(time.Microsecond),
		OrderID:       orderID,
		CorrelationID: correlationID,
		CausationID:   causationID,
		Producer:      f.Producer,
		Payload:       p,
	}, nil
}

// NewID returns a time-ordered UUID (version 7). Event and reservation ids are keys of unique
// indexes (outbox, inbox, reservations); ordered ids are inserted at the index's right edge instead of
// a random leaf page, so Postgres touches, caches and writes (full-page images after a checkpoint)
// far fewer pages.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// ValidatePayload checks the payload of a known event type against its schema; unknown types pass
// (they are additive). Tools use it to refuse a hand-edited event before it reaches the services.
func ValidatePayload(e Envelope) error {
	var err error
	switch e.EventType {
	case OrderCreated:
		_, err = DecodePayload[OrderCreatedPayload](e)
	case InventoryReserved, InventoryRejected:
		_, err = DecodePayload[InventoryPayload](e)
	case InventoryReleased:
		_, err = DecodePayload[InventoryReleasedPayload](e)
	case PaymentAuthorized, PaymentFailed:
		_, err = DecodePayload[PaymentPayload](e)
	case DeliveryAssigned, ETAUpdated, DeliveryCompleted:
		_, err = DecodePayload[DeliveryPayload](e)
	case DeliveryWaiting:
		_, err = DecodePayload[DeliveryWaitingPayload](e)
	case OrderCancelled:
		_, err = DecodePayload[OrderCancelledPayload](e)
	case DeliveryCancelled, CancellationRefused:
		_, err = DecodePayload[CancellationPayload](e)
	case PaymentRefunded:
		_, err = DecodePayload[PaymentRefundedPayload](e)
	}
	return err
}
