package service

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/lifecycle"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// Outbox starts the outbox relay for pool with its own idempotent producer. Add it before the
// consumers so that on shutdown it stops after them and publishes what they committed last.
func (s *Service) Outbox(pool *pgxpool.Pool, kc kafka.Config, rc outbox.RelayConfig) error {
	kc.ClientID = s.Name + "-outbox"
	// The relay hands Kafka whole batches; lingering would only add latency.
	prod, err := kgo.NewClient(kc.Options(kgo.ProducerLinger(0))...)
	if err != nil {
		return err
	}
	s.OnClose(prod.Close)
	relay := outbox.NewRelay(pool, prod, s.Log, s.Reg, rc)
	s.Group.Add(lifecycle.Component{Name: "outbox-relay", Run: relay.Run})
	return nil
}

// Consumer starts a consumer runner. The service is not ready until the runner first joined its
// group. Defaults for Log and Metrics are filled in.
func (s *Service) Consumer(kc kafka.Config, rc kafka.RunnerConfig) error {
	if s.runnerMetrics == nil {
		s.runnerMetrics = kafka.NewRunnerMetrics(s.Reg)
	}
	if rc.Log == nil {
		rc.Log = s.Log
	}
	rc.Metrics = s.runnerMetrics
	if rc.Unavailable == nil {
		rc.Unavailable = pg.IsUnavailable // every consumer here writes Postgres; query-api sets its own
	}
	gate := "consumer " + rc.Group
	s.Health.Gate(gate)
	rc.OnJoined = func() { s.Health.Open(gate) }
	kc.ClientID = s.Name
	r, err := kafka.NewRunner(kc, rc)
	if err != nil {
		return err
	}
	s.Group.Add(lifecycle.Component{Name: "consumer " + rc.Group, Run: r.Run})
	return nil
}
