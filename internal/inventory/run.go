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
	return service.Main(ctx, Name, getenv, stdout, Configure, run)
}

func run(ctx context.Context, s *service.Service, cfg Config) error {
	items, err := catalog.Load(cfg.CatalogFile)
	if err != nil {
		return err
	}
	pool, err := s.Postgres(ctx, cfg.Postgres, outbox.Migrations(), inbox.Migrations(), Migrations())
	if err != nil {
		return err
	}
	st := &store{pool: pool, inbox: s.Inbox(pool, cfg.Group, cfg.DedupRetention), factory: event.Factory{Producer: Name}, now: time.Now}
	if err := st.seed(ctx, items); err != nil {
		return err
	}
	c := &consumer{store: st, metrics: newMetrics(s.Reg)}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ItemID
	}
	s.Group.Add(lifecycle.Component{Name: "stock-gauge", Run: func(ctx context.Context) error { return c.reportStock(ctx, ids) }})
	s.Outbox(pool, outbox.RelayConfig{})
	if err := s.Consumer(kafka.RunnerConfig{Group: cfg.Group, Topics: []string{event.TopicOrders, event.TopicPayments, event.TopicDelivery}, Handler: c.handle}); err != nil {
		return err
	}
	(&api{store: st, log: s.Log, tokens: s.PageTokens}).routes(s.Mux)
	return nil
}
