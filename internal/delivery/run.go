package delivery

import (
	"context"
	"embed"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
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
	return pg.EmbeddedMigrations(migrationFiles, "migrations", "goose_delivery")
}

// Run starts delivery-service and blocks until ctx is cancelled or a component fails.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	return service.Main(ctx, Name, getenv, stdout, Configure, run)
}

func run(ctx context.Context, s *service.Service, cfg Config) error {
	pool, err := s.Postgres(ctx, cfg.Postgres, outbox.Migrations(), inbox.Migrations(), Migrations())
	if err != nil {
		return err
	}
	st := &store{pool: pool, inbox: s.Inbox(pool, cfg.Group, cfg.DedupRetention), factory: event.Factory{Producer: Name, Now: time.Now},
		rules: cfg.Rules, now: time.Now}
	if err := st.seedDrivers(ctx, cfg.Rules.Drivers); err != nil {
		return err
	}
	c := &consumer{store: st, metrics: newMetrics(s.Reg), log: s.Log}
	s.Group.Add(lifecycle.Component{Name: "eta-scheduler", Run: func(ctx context.Context) error { return c.schedule(ctx, cfg.SchedulerInterval) }})
	s.Outbox(pool, outbox.RelayConfig{})
	if err := s.Consumer(kafka.RunnerConfig{Group: cfg.Group, Topics: []string{event.TopicPayments, event.TopicOrders}, Handler: c.handle}); err != nil {
		return err
	}
	s.Mux.Operator("GET /api/deliveries/{orderId}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("orderId")
		if !httpx.ValidID(id, event.MaxOrderIDLen) {
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "orderId must be 1 to 64 characters"))
			return
		}
		d, err := st.get(r.Context(), id)
		switch {
		case errors.Is(err, ErrNotFound):
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no delivery for order "+id))
		case err != nil:
			httpx.Unavailable(w, r, s.Log, "delivery store", err)
		default:
			httpx.WriteJSON(w, http.StatusOK, d)
		}
	})
	s.Mux.Operator("GET /api/drivers", func(w http.ResponseWriter, r *http.Request) {
		ds, err := st.drivers(r.Context())
		if err != nil {
			httpx.Unavailable(w, r, s.Log, "delivery store", err)
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"drivers": ds, "capacity": cfg.Rules.Capacity})
	})
	return nil
}
