package event

import (
	"errors"
	"fmt"
	"time"
)

// Item is one order line.
type Item struct {
	ItemID    string `json:"itemId"`
	Quantity  int    `json:"quantity"`
	UnitPrice Money  `json:"unitPrice"`
}

// OrderCreatedPayload is the payload of order.created.
type OrderCreatedPayload struct {
	CustomerID  string `json:"customerId"`
	TotalAmount Money  `json:"totalAmount"`
	Currency    string `json:"currency"`
	Items       []Item `json:"items"`
}

// MaxQuantity bounds one order line's quantity on the wire: stock is counted in 32-bit integers,
// and a larger quantity could only come from a broken or hostile producer.
const MaxQuantity = 1_000_000

// Validate checks the fields inventory-service relies on.
func (p *OrderCreatedPayload) Validate() error {
	if p.CustomerID == "" || len(p.Items) == 0 || len(p.Currency) != 3 {
		return errors.New("customerId, currency and at least one item are required")
	}
	for _, it := range p.Items {
		if it.ItemID == "" || it.Quantity <= 0 || it.Quantity > MaxQuantity {
			return fmt.Errorf("every item needs an itemId and a quantity from 1 to %d", MaxQuantity)
		}
	}
	return nil
}

// RejectedItem names an order line that could not be reserved.
type RejectedItem struct {
	ItemID    string `json:"itemId"`
	Requested int    `json:"requested"`
	Available int    `json:"available"`
}

// Rejection reasons of inventory.rejected.
const (
	ReasonInsufficientStock = "INSUFFICIENT_STOCK"
	ReasonUnknownItem       = "UNKNOWN_ITEM"
)

// InventoryPayload is the payload of inventory.reserved and inventory.rejected. Reason and Items are
// set on rejection only.
type InventoryPayload struct {
	OrderID       string         `json:"orderId"`
	Amount        Money          `json:"amount"`
	Currency      string         `json:"currency"`
	CustomerID    string         `json:"customerId"`
	ReservationID string         `json:"reservationId,omitempty"`
	Reason        string         `json:"reason,omitempty"`
	Items         []RejectedItem `json:"items,omitempty"`
}

// Validate checks the fields payment-service relies on.
func (p *InventoryPayload) Validate() error {
	if p.OrderID == "" || len(p.Currency) != 3 {
		return errors.New("orderId and currency are required")
	}
	return nil
}

// InventoryReleasedPayload is the payload of inventory.released: the reservation was given back
// after payment.failed (Reason PAYMENT_FAILED) or an accepted cancellation (Reason ORDER_CANCELLED,
// CancelReason the cancellation's reason), which payment-service refunds on.
type InventoryReleasedPayload struct {
	OrderID       string `json:"orderId"`
	ReservationID string `json:"reservationId"`
	Reason        string `json:"reason"`
	CancelReason  string `json:"cancelReason,omitempty"`
}

// Payment statuses.
const (
	PaymentStatusAuthorized = "AUTHORIZED"
	PaymentStatusFailed     = "FAILED"
)

// PaymentPayload is the payload of payment.authorized and payment.failed. FailureReason is null when
// authorized (encoded as JSON null, not omitted).
type PaymentPayload struct {
	PaymentID     int64   `json:"paymentId"`
	OrderID       string  `json:"orderId"`
	Amount        Money   `json:"amount"`
	Currency      string  `json:"currency"`
	Status        string  `json:"status"`
	FailureReason *string `json:"failureReason"`
}

// Validate checks the fields inventory-, delivery-service and the query-api rely on.
func (p *PaymentPayload) Validate() error {
	if p.OrderID == "" || p.PaymentID <= 0 {
		return errors.New("orderId and a positive paymentId are required")
	}
	if p.Status != PaymentStatusAuthorized && p.Status != PaymentStatusFailed {
		return errors.New("status must be AUTHORIZED or FAILED")
	}
	return nil
}

// Delivery statuses.
const (
	DeliveryStatusAssigned  = "ASSIGNED"
	DeliveryStatusDelivered = "DELIVERED"
)

// DeliveryPayload is the payload of delivery.assigned, eta.updated and delivery.completed.
type DeliveryPayload struct {
	OrderID               string    `json:"orderId"`
	DeliveryID            string    `json:"deliveryId"`
	DriverName            string    `json:"driverName"`
	Status                string    `json:"status"`
	EstimatedDeliveryTime time.Time `json:"estimatedDeliveryTime"`
}

// Validate checks the fields the query-api relies on.
func (p *DeliveryPayload) Validate() error {
	if p.OrderID == "" || p.DeliveryID == "" || p.EstimatedDeliveryTime.IsZero() {
		return errors.New("orderId, deliveryId and estimatedDeliveryTime are required")
	}
	return nil
}

// DeliveryWaitingPayload is the payload of delivery.waiting: every driver is at capacity, so the
// order waits in delivery-service's queue (first come, first served) from WaitingSince until a
// driver frees up; delivery.assigned follows.
type DeliveryWaitingPayload struct {
	OrderID      string    `json:"orderId"`
	WaitingSince time.Time `json:"waitingSince"`
}

// Validate checks the fields the query-api relies on.
func (p *DeliveryWaitingPayload) Validate() error {
	if p.OrderID == "" || p.WaitingSince.IsZero() {
		return errors.New("orderId and waitingSince are required")
	}
	return nil
}

// Cancellation reasons: why an order was cancelled (order.cancelled, delivery.cancelled,
// payment.refunded), and why stock was released (inventory.released).
const (
	ReasonCustomerRequest  = "CUSTOMER_REQUEST"  // POST /api/orders/{id}/cancel
	ReasonDeadlineExceeded = "DEADLINE_EXCEEDED" // order-service's deadline sweeper
	ReasonPaymentFailed    = "PAYMENT_FAILED"    // inventory.released after payment.failed
	ReasonOrderCancelled   = "ORDER_CANCELLED"   // inventory.released after delivery.cancelled
)

// RefusalDelivered is why a cancellation is refused: the order was delivered first.
const RefusalDelivered = "ALREADY_DELIVERED"

// MaxCommentLen bounds the customer's free-text comment on a cancellation.
const MaxCommentLen = 500

// OrderCancelledPayload is the payload of order.cancelled: a request to cancel, which
// delivery-service accepts (delivery.cancelled) or refuses (cancellation.refused).
type OrderCancelledPayload struct {
	OrderID string `json:"orderId"`
	Reason  string `json:"reason"`
	Comment string `json:"comment,omitempty"`
}

// Validate checks the fields delivery-service relies on.
func (p *OrderCancelledPayload) Validate() error {
	if p.OrderID == "" || (p.Reason != ReasonCustomerRequest && p.Reason != ReasonDeadlineExceeded) {
		return errors.New("orderId and a reason (CUSTOMER_REQUEST or DEADLINE_EXCEEDED) are required")
	}
	if len(p.Comment) > MaxCommentLen {
		return fmt.Errorf("comment is longer than %d bytes", MaxCommentLen)
	}
	return nil
}

// CancellationPayload is the payload of delivery-service's decision on an order.cancelled:
// delivery.cancelled (accepted: the delivery, if any, is cancelled and its driver freed) or
// cancellation.refused (Refusal says why). DeliveryID and DriverName name the delivery, if any.
type CancellationPayload struct {
	OrderID    string `json:"orderId"`
	Reason     string `json:"reason"`
	DeliveryID string `json:"deliveryId,omitempty"`
	DriverName string `json:"driverName,omitempty"`
	Refusal    string `json:"refusal,omitempty"`
}

// Validate checks the fields inventory, payment and the query-api rely on.
func (p *CancellationPayload) Validate() error {
	if p.OrderID == "" || p.Reason == "" {
		return errors.New("orderId and reason are required")
	}
	return nil
}

// PaymentRefundedPayload is the payload of payment.refunded: the authorized payment PaymentID was
// refunded in full after the order's cancellation was accepted.
type PaymentRefundedPayload struct {
	PaymentID int64  `json:"paymentId"`
	OrderID   string `json:"orderId"`
	Amount    Money  `json:"amount"`
	Currency  string `json:"currency"`
	Reason    string `json:"reason"`
}

// Validate checks the fields the query-api relies on.
func (p *PaymentRefundedPayload) Validate() error {
	if p.OrderID == "" || p.PaymentID <= 0 {
		return errors.New("orderId and a positive paymentId are required")
	}
	return nil
}
