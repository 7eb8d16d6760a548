package payment

import (
	"context"
	"embed"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/redislock"
	"github.com/orderflow/orderflow/internal/platform/service"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's own schema (verify and its tests migrate fresh databases with it).
func Migrations() pg.Migrations {
	return pg.EmbeddedMigrations(migrationFiles, "migrations", "goose_payment")
}

// Run starts payment-service and blocks until ctx is cancelled or a component fails.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	return service.Main(ctx, Name, getenv, stdout, Configure, run)
}

func run(ctx context.Context, s *service.Service, cfg Config) error {
	pool, err := s.Postgres(ctx, cfg.Postgres, outbox.Migrations(), Migrations())
	if err != nil {
		return err
	}
	rdb := s.Redis(cfg.Redis)
	p := &processor{
		pool:    pool,
		locker:  &redislock.Locker{Client: rdb, Prefix: cfg.LockPrefix, TTL: cfg.LockTTL, Wait: cfg.LockWait},
		dedup:   &redislock.Dedup{Client: rdb, Prefix: cfg.DedupPrefix, TTL: cfg.DedupTTL},
		gateway: cfg.Gateway, factory: event.Factory{Producer: Name}, metrics: newMetrics(s.Reg), log: s.Log, now: time.Now,
	}
	s.Outbox(pool, outbox.RelayConfig{})
	if err := s.Consumer(kafka.RunnerConfig{Group: cfg.Group, Topics: []string{event.TopicInventory}, Handler: p.handle}); err != nil {
		return err
	}
	s.Mux.Operator("GET /api/payments/{orderId}", getPayment(p, s.Log))
	return nil
}

func getPayment(p *processor, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("orderId")
		if !httpx.ValidID(id, event.MaxOrderIDLen) {
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "orderId must be 1 to 64 characters"))
			return
		}
		pay, err := p.get(r.Context(), id)
		switch {
		case errors.Is(err, ErrNotFound):
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no payment for order "+id))
		case err != nil:
			httpx.Unavailable(w, r, log, "payment store", err)
		default:
			httpx.WriteJSON(w, http.StatusOK, pay)
		}
	}
}
