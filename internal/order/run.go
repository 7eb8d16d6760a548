package order

import (
	"context"
	"embed"
	"io"
	"io/fs"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/service"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's own schema (verify and its tests migrate fresh databases with it).
func Migrations() pg.Migrations {
	sub, _ := fs.Sub(migrationFiles, "migrations")
	return pg.Migrations{Table: "goose_order", FS: sub}
}

// Run starts order-service and blocks until ctx is cancelled or a component fails.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	s := service.New(Name, stdout, cfg.Common)
	pool, err := s.Postgres(ctx, cfg.Postgres, outbox.Migrations(), Migrations())
	if err != nil {
		s.Close()
		return err
	}
	if _, err := s.Kafka(cfg.Kafka); err != nil {
		s.Close()
		return err
	}
	if err := s.Outbox(pool, cfg.Kafka, outbox.RelayConfig{}); err != nil {
		s.Close()
		return err
	}
	a := &api{store: &store{pool: pool, factory: event.Factory{Producer: Name}, now: time.Now}, limits: cfg.Limits, log: s.Log}
	a.routes(s.Mux)
	return s.Serve(ctx, cfg.HTTPAddr)
}
