package delivery

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
)

type metrics struct {
	assignments prometheus.Counter
	etaUpdates  prometheus.Counter
	completed   prometheus.Counter
	active      prometheus.Gauge
	waiting     prometheus.Gauge
	queued      prometheus.Counter
	runs        prometheus.Histogram
	ignored     *prometheus.CounterVec
	// cancellations counts delivery-service's decisions on order.cancelled, and payments that came
	// for an order already cancelled (not_assigned).
	cancellations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		assignments: prometheus.NewCounter(prometheus.CounterOpts{Name: "delivery_assignments_total", Help: "Deliveries assigned to a driver."}),
		etaUpdates:  prometheus.NewCounter(prometheus.CounterOpts{Name: "delivery_eta_updates_total", Help: "eta.updated events published by the scheduler."}),
		completed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "delivery_completed_total", Help: "Deliveries marked DELIVERED."}),
		active:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "delivery_active", Help: "Deliveries assigned and not yet delivered."}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "delivery_waiting_for_driver",
			Help: "Orders in the driver queue (every driver was at capacity), refreshed each scheduler pass."}),
		queued: prometheus.NewCounter(prometheus.CounterOpts{Name: "delivery_queued_total",
			Help: "Orders put in the driver queue because every driver was at capacity (or others waited)."}),
		runs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "delivery_scheduler_run_seconds", Help: "Duration of one ETA scheduler pass.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 5}}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delivery_events_ignored_total",
			Help: "Events acknowledged without effect (payment.failed, ...)."}, []string{"type"}),
		cancellations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delivery_cancellations_total",
			Help: "Cancellations decided, by outcome: driver_freed, left_queue, before_assignment (accepted), refused (already delivered); not_assigned counts payments that came after the cancellation."},
			[]string{"outcome"}),
	}
	reg.MustRegister(m.assignments, m.etaUpdates, m.completed, m.active, m.waiting, m.queued, m.runs, m.ignored, m.cancellations)
	return m
}

type consumer struct {
	store   *store
	metrics *metrics
	log     *slog.Logger
}

// handle is the consumer handler: it assigns a partition's authorizations in one transaction (see
// assignAll; an order without a free driver is queued and the partition moves on) and decides its
// cancellations in another (see cancelAll).
func (c *consumer) handle(ctx context.Context, es []event.Envelope) error {
	var auth, cancels []event.Envelope
	var reasons []string
	var ignored []event.Type
	for _, e := range es {
		switch e.EventType {
		case event.PaymentAuthorized:
			if _, err := event.DecodePayload[event.PaymentPayload](e); err != nil {
				return err
			}
			auth = append(auth, e)
		case event.OrderCancelled:
			p, err := event.DecodePayload[event.OrderCancelledPayload](e)
			if err != nil {
				return err
			}
			cancels, reasons = append(cancels, e), append(reasons, p.Reason)
		default:
			ignored = append(ignored, e.EventType)
		}
	}
	if len(auth) > 0 {
		res, err := c.store.assignAll(ctx, auth)
		if err != nil {
			return err
		}
		for _, r := range res {
			switch {
			case r.cancelled:
				c.metrics.cancellations.WithLabelValues("not_assigned").Inc()
			case r.duplicate:
				c.store.inbox.Duplicate()
			case r.waiting:
				c.metrics.queued.Inc()
			default:
				c.metrics.assignments.Inc()
			}
		}
	}
	if len(cancels) > 0 {
		res, err := c.store.cancelAll(ctx, cancels, reasons)
		if err != nil {
			return err
		}
		for _, r := range res {
			switch {
			case r.duplicate:
				c.store.inbox.Duplicate()
			case r.refusal != "":
				c.metrics.cancellations.WithLabelValues("refused").Inc()
			case r.freed:
				c.metrics.cancellations.WithLabelValues("driver_freed").Inc()
			case r.dequeued:
				c.metrics.cancellations.WithLabelValues("left_queue").Inc()
			default:
				c.metrics.cancellations.WithLabelValues("before_assignment").Inc()
			}
		}
	}
	for _, t := range ignored {
		c.metrics.ignored.WithLabelValues(string(t)).Inc()
	}
	return nil
}

// schedule runs the ETA scheduler, then the driver queue, until ctx ends. Every delivery is re-checked once per interval,
// but passes run every passEvery(interval) and take only the deliveries due by then: deliveries are
// assigned continuously, so the work arrives as a steady trickle instead of one burst per interval
// (a burst of a thousand eta.updated events every 10 s queued the next delivery.assigned events
// behind it in the outbox and showed as the end-to-end latency tail).
func (c *consumer) schedule(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(passEvery(interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for {
			start := time.Now()
			res, err := c.store.tick(ctx, interval, 500)
			c.metrics.runs.Observe(time.Since(start).Seconds())
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("eta scheduler pass failed", "err", err)
				}
				break
			}
			c.metrics.etaUpdates.Add(float64(res.updated))
			c.metrics.completed.Add(float64(res.delivered))
			if res.checked < 500 {
				break
			}
		}
		c.assignWaiting(ctx)
		if n, err := c.store.activeCount(ctx); err == nil {
			c.metrics.active.Set(float64(n))
		}
	}
}

// assignWaiting gives the drivers freed since the last pass (the completions just made, on any
// replica) to the queue, oldest order first.
func (c *consumer) assignWaiting(ctx context.Context) {
	n, err := c.store.waitingCount(ctx)
	if err == nil {
		c.metrics.waiting.Set(float64(n))
	}
	for n > 0 {
		done, err := c.store.assignWaiting(ctx, 500)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("driver queue pass failed", "err", err)
			}
			return
		}
		c.metrics.assignments.Add(float64(done))
		if done < 500 {
			return
		}
		n -= done
	}
}

// passEvery is the scheduler's pass period for a re-check interval: a tenth of it, between 100 ms
// and 1 s.
func passEvery(interval time.Duration) time.Duration {
	return min(max(interval/10, 100*time.Millisecond), time.Second)
}
