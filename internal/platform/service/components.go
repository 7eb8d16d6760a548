package service

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"

	"github.com/orderflow/orderflow/internal/platform/inbox"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/lifecycle"
	"github.com/orderflow/orderflow/internal/platform/obs"
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
	if s.Tracing != nil {
		opts := []kotel.TracerOpt{kotel.TracerProvider(s.Tracing.Provider), kotel.TracerPropagator(obs.Propagator()), kotel.ClientID(s.Name)}
		if s.consumer != nil {
			opts = append(opts, kotel.ConsumerGroup(s.consumer.Group))
		}
		kc.Tracer = kotel.NewTracer(opts...)
	}
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
		if s.inboxKeep > 0 {
			s.checkRetention(cl, s.consumer.Topics)
		}
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

// Inbox returns the inbox of consumer group, keeps its records for keep (purged like Purge) and,
// once the service's consumer runs, warns when a consumed topic keeps records longer than that: an
// event redelivered after its inbox record was purged would be applied again.
func (s *Service) Inbox(pool *pgxpool.Pool, group string, keep time.Duration) *inbox.Inbox {
	s.Purge(pool, inbox.Retention(keep))
	s.inboxKeep = keep
	return inbox.New(group, s.Reg)
}

// checkRetention compares the consumed topics' retention with the inbox's, once, without holding
// up the start (Kafka may not be up yet).
func (s *Service) checkRetention(cl *kgo.Client, topics []string) {
	keep := s.inboxKeep
	s.Group.Add(lifecycle.Component{Name: "retention-check", Run: func(ctx context.Context) error {
		for attempt := 0; ; attempt++ {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			rs, err := kafka.Retentions(rctx, cl, topics...)
			cancel()
			if err == nil {
				for _, t := range topics {
					if r, ok := rs[t]; ok && (r < 0 || r > keep) {
						s.Log.Warn("DEDUP_RETENTION is shorter than a consumed topic's retention: an event redelivered after its inbox record was purged would be applied again",
							"topic", t, "topicRetention", retentionString(r), "dedupRetention", keep.String())
					} else {
						s.Log.Debug("the inbox outlives the topic's records", "topic", t, "topicRetention", retentionString(r), "dedupRetention", keep.String())
					}
				}
				break
			}
			if attempt == 5 {
				s.Log.Warn("could not read the consumed topics' retention; DEDUP_RETENTION was not checked against it", "err", err)
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
		<-ctx.Done()
		return nil
	}})
}

func retentionString(d time.Duration) string {
	if d < 0 {
		return "forever"
	}
	return d.String()
}
