package event

// Order statuses: how far the saga got with an order. order-service and the read model derive them
// from the same events with the same ranks, so both end on the same status.
const (
	OrderStatusCreated           = "CREATED"
	OrderStatusInventoryReserved = "INVENTORY_RESERVED"
	OrderStatusInventoryRejected = "INVENTORY_REJECTED"
	OrderStatusPaymentAuthorized = "PAYMENT_AUTHORIZED"
	OrderStatusPaymentFailed     = "PAYMENT_FAILED"
	OrderStatusDeliveryAssigned  = "DELIVERY_ASSIGNED"
	OrderStatusDelivered         = "DELIVERED"
	OrderStatusCancelled         = "CANCELLED"
)

// orderStatuses lists the statuses in rank order with their ranks.
var orderStatuses = []struct {
	status string
	rank   int
}{
	{OrderStatusCreated, 0}, {OrderStatusInventoryReserved, 1}, {OrderStatusInventoryRejected, 1},
	{OrderStatusPaymentAuthorized, 2}, {OrderStatusPaymentFailed, 2}, {OrderStatusDeliveryAssigned, 3},
	{OrderStatusDelivered, 4}, {OrderStatusCancelled, 5},
}

// OrderStatuses lists the order statuses in saga order.
func OrderStatuses() []string {
	out := make([]string, len(orderStatuses))
	for i, s := range orderStatuses {
		out[i] = s.status
	}
	return out
}

// StatusRank returns a status's rank (see StatusOf); ok is false for an unknown status.
func StatusRank(status string) (rank int, ok bool) {
	for _, s := range orderStatuses {
		if s.status == status {
			return s.rank, true
		}
	}
	return 0, false
}

// StatusOf returns the order status an event of type t sets and its rank (CREATED 0, INVENTORY_* 1,
// PAYMENT_* 2, DELIVERY_ASSIGNED 3, DELIVERED 4, CANCELLED 5). A status never gives way to a lower
// rank, so the result does not depend on the order events are applied in. CANCELLED is set by
// delivery.cancelled, delivery-service's acceptance: it outranks every status it can follow, and
// DELIVERED never follows it (a delivered order's cancellation is refused). ok is false for events
// that set no status (inventory.released, eta.updated, order.cancelled, the refunds and refusals,
// unknown types).
func StatusOf(t Type) (status string, rank int, ok bool) {
	switch t {
	case OrderCreated:
		status = OrderStatusCreated
	case InventoryReserved:
		status = OrderStatusInventoryReserved
	case InventoryRejected:
		status = OrderStatusInventoryRejected
	case PaymentAuthorized:
		status = OrderStatusPaymentAuthorized
	case PaymentFailed:
		status = OrderStatusPaymentFailed
	case DeliveryAssigned:
		status = OrderStatusDeliveryAssigned
	case DeliveryCompleted:
		status = OrderStatusDelivered
	case DeliveryCancelled:
		status = OrderStatusCancelled
	default:
		return "", 0, false
	}
	rank, _ = StatusRank(status)
	return status, rank, true
}

// TerminalStatus reports whether no further status change is expected in the saga (DELIVERED may
// still follow DELIVERY_ASSIGNED, but the saga is complete).
func TerminalStatus(status string) bool {
	switch status {
	case OrderStatusInventoryRejected, OrderStatusPaymentFailed, OrderStatusDeliveryAssigned, OrderStatusDelivered, OrderStatusCancelled:
		return true
	}
	return false
}
