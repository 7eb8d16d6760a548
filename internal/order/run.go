package order

import (
	"context"
	"embed"
	"io"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
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
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	return service.Run(ctx, Name, stdout, cfg.Common, cfg.HTTPAddr, func(ctx context.Context, s *service.Service) error {
		pool, err := s.Postgres(ctx, cfg.Postgres, outbox.Migrations(), Migrations())
		if err != nil {
			return err
		}
		if _, err := s.Kafka(cfg.Kafka); err != nil {
			return err
		}
		if err := s.Outbox(pool, cfg.Kafka, outbox.RelayConfig{}); err != nil {
			return err
		}
		a := &api{store: &store{pool: pool, factory: event.Factory{Producer: Name}, now: time.Now}, limits: cfg.Limits, log: s.Log,
			cors: httpx.CORS{Origins: cfg.CORS, Methods: []string{"GET", "POST"}, Headers: []string{"Content-Type", "Idempotency-Key"}}}
		a.routes(s.Mux)
		return nil
	})
}
