package payment

import (
	"context"
	"io"

	"github.com/orderflow/orderflow/internal/platform/service"
)

// Run starts payment-service and blocks until ctx is cancelled or a component fails.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	s := service.New(Name, stdout, cfg.Common)
	if _, err := s.Postgres(ctx, cfg.Postgres); err != nil {
		s.Close()
		return err
	}
	if _, err := s.Kafka(cfg.Kafka); err != nil {
		s.Close()
		return err
	}
	s.Redis(cfg.Redis)
	return s.Serve(ctx, cfg.HTTPAddr)
}
