package order

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sweeper cancels the orders that missed their deadline (store.expire), on every replica.
type sweeper struct {
	store    *store
	deadline time.Duration
	expired  prometheus.Counter
	log      *slog.Logger
}

func newSweeper(st *store, deadline time.Duration, reg prometheus.Registerer, log *slog.Logger) *sweeper {
	sw := &sweeper{store: st, deadline: deadline, log: log, expired: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "order_deadline_expired_total",
		Help: "Orders cancelled by the deadline sweeper (DEADLINE_EXCEEDED) because they had not reached DELIVERY_ASSIGNED in time."})}
	reg.MustRegister(sw.expired)
	return sw
}

// run sweeps every tenth of the deadline (between 100 ms and 10 s) until ctx ends.
func (sw *sweeper) run(ctx context.Context) error {
	t := time.NewTicker(min(max(sw.deadline/10, 100*time.Millisecond), 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for {
			n, err := sw.store.expire(ctx, sw.store.now().Add(-sw.deadline), 500)
			if err != nil {
				if ctx.Err() == nil {
					sw.log.Warn("deadline sweep failed; retried on the next pass", "err", err)
				}
				break
			}
			sw.expired.Add(float64(n))
			if n < 500 {
				break
			}
		}
	}
}
