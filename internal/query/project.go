package query

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/internal/event"
)

// Projector applies events to a Store; it is the consumer handler of query-api.
type Projector struct {
	Store   Store
	Notify  func(orderID string) // optional: wake local SSE subscribers after a write
	metrics *projectorMetrics
	now     func() time.Time
}

type projectorMetrics struct {
	projected *prometheus.CounterVec
	lag       prometheus.Histogram
}

// NewProjector returns a projector registering query_events_projected_total and
// query_projection_lag_seconds (occurredAt → applied: the end-to-end latency up to the read model).
func NewProjector(st Store, reg prometheus.Registerer) *Projector {
	m := &projectorMetrics{
		projected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "query_events_projected_total",
			Help: "Events applied to the read model, by type."}, []string{"type"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "query_projection_lag_seconds",
			Help:    "Time from an event's occurredAt to its projection into the read model.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	reg.MustRegister(m.projected, m.lag)
	return &Projector{Store: st, metrics: m, now: time.Now}
}

// Handle is the consumer handler: it folds a partition's events and applies them concurrently
// (the fold is order-independent, so there is no need to apply one after the other). A payload
// that does not decode is a permanent error (DLQ).
func (p *Projector) Handle(ctx context.Context, es []event.Envelope) error {
	ms := make([]Mutation, len(es))
	for i, e := range es {
		m, err := Fold(e)
		if err != nil {
			return err
		}
		ms[i] = m
	}
	if err := p.applyAll(ctx, ms); err != nil {
		return err
	}
	now := p.now()
	for _, e := range es {
		p.metrics.projected.WithLabelValues(string(e.EventType)).Inc()
		p.metrics.lag.Observe(now.Sub(e.OccurredAt).Seconds())
		if p.Notify != nil {
			p.Notify(e.OrderID)
		}
	}
	return nil
}

// applyAll writes the mutations concurrently: through the store's own batching when it has it,
// else one goroutine per write.
func (p *Projector) applyAll(ctx context.Context, ms []Mutation) error {
	if b, ok := p.Store.(interface {
		ApplyMany(context.Context, []Mutation) error
	}); ok {
		return b.ApplyMany(ctx, ms)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, m := range ms {
		g.Go(func() error { return p.Store.Apply(gctx, m) })
	}
	return g.Wait()
}
