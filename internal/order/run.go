package order

import (
	"context"
	"embed"
	"io"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/lifecycle"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/service"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's own schema (verify and its tests migrate fresh databases with it).
func Migrations() pg.Migrations {
	return pg.EmbeddedMigrations(migrationFiles, "migrations", "goose_order")
}

// Run starts order-service and blocks until ctx is cancelled or a component fails.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	return service.Main(ctx, Name, getenv, stdout, Configure, run)
}

func run(ctx context.Context, s *service.Service, cfg Config) error {
	pool, err := s.Postgres(ctx, cfg.Postgres, outbox.Migrations(), Migrations())
	if err != nil {
		return err
	}
	s.Outbox(pool, outbox.RelayConfig{})
	// The status follows the saga; it is not on its path (cancellations and the deadline sweep
	// tolerate a status a fraction of a second old), so the tracker fetches at most ten times a
	// second and updates many orders per statement.
	if err := s.Consumer(kafka.RunnerConfig{Group: cfg.Group, Topics: trackedTopics(), Handler: newTracker(pool, s.Reg).handle,
		FetchMinBytes: 1 << 20, FetchMaxWait: trackerFetchWait}); err != nil {
		return err
	}
	s.Purge(pool, pg.Retention{Table: "idempotency_keys", Column: "created_at", Keep: cfg.DedupRetention})
	st := &store{pool: pool, factory: event.Factory{Producer: Name}, now: time.Now}
	sw := newSweeper(st, cfg.Deadline, s.Reg, s.Log)
	s.Group.Add(lifecycle.Component{Name: "deadline-sweeper", Run: sw.run})
	a := &api{store: st, limits: cfg.Limits, log: s.Log,
		cors: httpx.CORS{Origins: cfg.CORS, Methods: []string{"GET", "POST"}, Headers: []string{"Content-Type", "Idempotency-Key"}}}
	a.routes(s.Mux)
	return nil
}
