package event

// Kafka topics of the wire contract (DESIGN.md §1). The record key is always the orderId.
const (
	TopicOrders    = "raw.order-events"
	TopicInventory = "raw.inventory-events"
	TopicPayments  = "raw.payment-events"
	TopicDelivery  = "raw.delivery-events"

	DLQOrders    = "dlq.order-events"
	DLQInventory = "dlq.inventory-events"
	DLQPayments  = "dlq.payment-events"
	DLQDelivery  = "dlq.delivery-events"
)

// Consumer groups. Group names are persistent state in Kafka: renaming one loses its committed offsets.
const (
	GroupOrder     = "order-service-group"
	GroupInventory = "inventory-service-group"
	GroupPayment   = "payment-service-group"
	GroupDelivery  = "delivery-service-group"
	GroupQuery     = "query-api-group"
)

// MainTopics lists the domain topics in saga order.
func MainTopics() []string {
	return []string{TopicOrders, TopicInventory, TopicPayments, TopicDelivery}
}

// DLQTopics lists the dead-letter topics in the same order as MainTopics.
func DLQTopics() []string {
	return []string{DLQOrders, DLQInventory, DLQPayments, DLQDelivery}
}

// AllTopics lists every topic the system creates.
func AllTopics() []string { return append(MainTopics(), DLQTopics()...) }

// DLQFor maps a domain topic to its dead-letter topic ("raw.x-events" to "dlq.x-events");
// it returns "" for a topic that has none.
func DLQFor(topic string) string {
	for i, t := range MainTopics() {
		if t == topic {
			return DLQTopics()[i]
		}
	}
	return ""
}

// IsDLQ reports whether topic is one of the dead-letter topics.
func IsDLQ(topic string) bool {
	for _, t := range DLQTopics() {
		if t == topic {
			return true
		}
	}
	return false
}
