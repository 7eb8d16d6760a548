package inventory

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
)

type metrics struct {
	reservations *prometheus.CounterVec
	releases     prometheus.Counter
	ignored      *prometheus.CounterVec
	available    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reservations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inventory_reservations_total",
			Help: "Orders decided, by result (reserved, rejected, cancelled: cancelled before it was decided) and reason."}, []string{"result", "reason"}),
		releases: prometheus.NewCounter(prometheus.CounterOpts{Name: "inventory_releases_total",
			Help: "Reservations released after payment.failed or an accepted cancellation (delivery.cancelled)."}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inventory_events_ignored_total",
			Help: "Events acknowledged without effect, by type (other events on consumed topics)."}, []string{"type"}),
		available: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "inventory_stock_available",
			Help: "Units free to reserve, for the seeded catalog (at most 200 items)."}, []string{"item_id"}),
	}
	reg.MustRegister(m.reservations, m.releases, m.ignored, m.available)
	return m
}

type consumer struct {
	store   *store
	metrics *metrics
}

// handle is the consumer handler: it applies a partition's events in one transaction (see apply).
// order.created reserves, payment.failed and delivery.cancelled release; anything else on the consumed topics
// (payment.authorized, future additive events) is acknowledged and counted.
func (c *consumer) handle(ctx context.Context, es []event.Envelope) error {
	created := map[int]event.OrderCreatedPayload{}
	for i, e := range es {
		switch e.EventType {
		case event.OrderCreated:
			p, err := event.DecodePayload[event.OrderCreatedPayload](e)
			if err != nil {
				return err
			}
			created[i] = p
		case event.PaymentFailed:
			if _, err := event.DecodePayload[event.PaymentPayload](e); err != nil {
				return err
			}
		case event.DeliveryCancelled:
			if _, err := event.DecodePayload[event.CancellationPayload](e); err != nil {
				return err
			}
		}
	}
	outs, err := c.store.apply(ctx, es, created)
	if err != nil {
		return err
	}
	for i, e := range es {
		switch out := outs[i]; {
		case out.result == "":
			c.metrics.ignored.WithLabelValues(string(e.EventType)).Inc()
		case out.duplicate:
			c.store.inbox.Duplicate()
		case out.result == "released":
			c.metrics.releases.Inc()
		case out.result == "cancelled":
			c.metrics.reservations.WithLabelValues("cancelled", event.ReasonOrderCancelled).Inc()
		case out.result == "reserved" || out.result == "rejected":
			c.metrics.reservations.WithLabelValues(out.result, out.reason).Inc()
		}
	}
	return nil
}

// reportStock refreshes the stock gauge for the seeded catalog every few seconds.
func (c *consumer) reportStock(ctx context.Context, ids []string) error {
	if len(ids) > 200 {
		ids = ids[:200] // bounded label cardinality
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		rows, err := c.store.pool.Query(ctx, `SELECT item_id, available FROM stock WHERE item_id = ANY($1)`, ids)
		if err == nil {
			for rows.Next() {
				var id string
				var a int
				if rows.Scan(&id, &a) == nil {
					c.metrics.available.WithLabelValues(id).Set(float64(a))
				}
			}
			rows.Close()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
