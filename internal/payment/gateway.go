package payment

import (
	"context"
	"hash/fnv"
	"slices"
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

// Decline reasons, the failureReason of payment.failed.
const (
	ReasonAmountLimit = "AMOUNT_LIMIT_EXCEEDED"
	ReasonCustomer    = "CUSTOMER_DECLINED"
	ReasonDeclineRate = "GATEWAY_DECLINED"
)

// Gateway is the simulated payment gateway. Its decision depends only on the order's data, so a
// replay decides the same.
type Gateway struct {
	AmountLimit      event.Money   // amounts above it are declined (default 5000.00)
	DeclineCustomers []string      // customers always declined
	DeclineRate      float64       // share of orders declined, chosen by a hash of the orderId (0..1)
	Latency          time.Duration // simulated processing time
}

// Decide returns "" to authorize, or the reason for declining.
func (g Gateway) Decide(ctx context.Context, orderID, customerID string, amount event.Money) (string, error) {
	if g.Latency > 0 {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(g.Latency):
		}
	}
	switch {
	case amount.GreaterThan(g.AmountLimit.Decimal):
		return ReasonAmountLimit, nil
	case slices.Contains(g.DeclineCustomers, customerID):
		return ReasonCustomer, nil
	case g.DeclineRate > 0 && hashFraction(orderID) < g.DeclineRate:
		return ReasonDeclineRate, nil
	}
	return "", nil
}

// hashFraction maps an id to [0,1) deterministically.
func hashFraction(id string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return float64(h.Sum64()>>11) / float64(1<<53)
}
