package inventory

import (
	"context"
	"embed"
	"io"
	"time"

	"github.com/orderflow/orderflow/internal/catalog"
	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/inbox"
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
	return pg.EmbeddedMigrations(migrationFiles, "migrations", "goose_inventory")
}

// Run starts inventory-service and blocks until ctx is cancelled or a component fails.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	items, err := catalog.Load(cfg.CatalogFile)
	if err != nil {
		return err
	}
	return service.Run(ctx, Name, stdout, cfg.Common, cfg.HTTPAddr, func(ctx context.Context, s *service.Service) error {
		return run(ctx, s, cfg, items)
	})
}

func run(ctx context.Context, s *service.Service, cfg Config, items []catalog.Item) error {
	pool, err := s.Postgres(ctx, cfg.Postgres, outbox.Migrations(), inbox.Migrations(), Migrations())
	if err != nil {
		return err
	}
	if _, err := s.Kafka(cfg.Kafka); err != nil {
		return err
	}
	st := &store{pool: pool, inbox: inbox.New(cfg.Group, s.Reg), factory: event.Factory{Producer: Name}, now: time.Now}
	if err := st.seed(ctx, items); err != nil {
		return err
	}
	if err := s.Outbox(pool, cfg.Kafka, outbox.RelayConfig{}); err != nil {
		return err
	}
	c := &consumer{store: st, metrics: newMetrics(s.Reg)}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ItemID
	}
	s.Group.Add(lifecycle.Component{Name: "stock-gauge", Run: func(ctx context.Context) error { return c.reportStock(ctx, ids) }})
	if err := s.Consumer(cfg.Kafka, kafka.RunnerConfig{
		Group: cfg.Group, Topics: []string{event.TopicOrders, event.TopicPayments}, Handler: c.handle,
		Batch: c.handleBatch,
	}); err != nil {
		return err
	}
	(&api{store: st, log: s.Log, tokens: s.PageTokens}).routes(s.Mux)
	return nil
}
