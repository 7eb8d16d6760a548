package service

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/lifecycle"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// Outbox has the service run the outbox relay for pool, publishing with the service's Kafka client.
// The relay stops after the consumer, so it publishes what the consumer committed last.
func (s *Service) Outbox(pool *pgxpool.Pool, rc outbox.RelayConfig) {
	s.relay = &relaySpec{pool: pool, cfg: rc}
}

type relaySpec struct {
	pool *pgxpool.Pool
	cfg  outbox.RelayConfig
}

// Consumer has the service run a consumer runner on its Kafka client (one group per service). The
// service is not ready until the runner first joined its group. Log and Metrics are filled in.
func (s *Service) Consumer(rc kafka.RunnerConfig) error {
	if s.consumer != nil {
		return fmt.Errorf("consumer %s: the service already consumes as %s", rc.Group, s.consumer.Group)
	}
	s.consumer = &rc
	return nil
}

// connectKafka creates the service's one Kafka client, when it uses Kafka: the consumer's (which
// produces too), else a producer for the relay. It registers the "kafka" health check and adds the
// relay, then the consumer, to the lifecycle group. franz-go connects lazily, so this does not wait
// for the broker.
func (s *Service) connectKafka() error {
	if s.consumer == nil && s.relay == nil {
		return nil
	}
	kc := s.kafka
	kc.ClientID = s.Name
	var (
		cl     *kgo.Client
		runner *kafka.Runner
	)
	if s.consumer != nil {
		rc := *s.consumer
		rc.Log, rc.Metrics = cmp.Or(rc.Log, s.Log), kafka.NewRunnerMetrics(s.Reg)
		if rc.Unavailable == nil {
			rc.Unavailable = pg.IsUnavailable // every consumer here writes Postgres; query-api sets its own
		}
		gate := "consumer " + rc.Group
		s.Health.Gate(gate)
		rc.OnJoined = func() { s.Health.Open(gate) }
		r, err := kafka.NewRunner(kc, rc)
		if err != nil {
			return err
		}
		runner, cl = r, r.Client()
		s.OnClose(r.Close)
	} else {
		c, err := kgo.NewClient(kc.Options(kgo.ProducerLinger(0))...) // the relay hands Kafka whole batches
		if err != nil {
			return fmt.Errorf("kafka client: %w", err)
		}
		cl = c
		s.OnClose(c.Close)
	}
	s.Health.AddCheck("kafka", kafka.Check(cl))
	if s.relay != nil {
		relay := outbox.NewRelay(s.relay.pool, cl, s.Log, s.Reg, s.relay.cfg)
		s.Group.Add(lifecycle.Component{Name: "outbox-relay", Run: relay.Run})
	}
	if runner != nil {
		s.Group.Add(lifecycle.Component{Name: "consumer " + s.consumer.Group, Run: runner.Run})
	}
	return nil
}

// Purge adds a component that deletes the expired rows of pool's tables (see pg.Retention) at start
// and then periodically: every minute, or every half of the shortest retention when that is less.
func (s *Service) Purge(pool *pgxpool.Pool, rs ...pg.Retention) {
	every := time.Minute
	for _, r := range rs {
		every = min(every, max(r.Keep/2, 100*time.Millisecond))
	}
	s.Group.Add(lifecycle.Component{Name: "purge", Run: func(ctx context.Context) error {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for _, r := range rs {
				n, err := r.Purge(ctx, pool)
				switch {
				case err != nil && ctx.Err() == nil:
					s.Log.Warn("purge failed; retried on the next pass", "table", r.Table, "err", err)
				case n > 0:
					s.Log.Debug("purged expired rows", "table", r.Table, "rows", n, "retention", r.Keep.String())
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}})
}
