package payment

import (
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Name is the service name used in logs, metrics (application label) and the envelope's producer.
const Name = "payment-service"

// Config is payment-service's configuration; LoadConfig documents every variable and its default.
type Config struct {
	service.Common
	HTTPAddr string
}

// LoadConfig reads the configuration from getenv and validates it.
func LoadConfig(getenv func(string) string) (Config, error) {
	e := config.New(getenv)
	c := Config{Common: service.LoadCommon(e)}
	c.HTTPAddr = e.String("PAYMENT_HTTP_ADDR", "127.0.0.1:8082", "Listen address of payment-service.")
	c.Postgres.Database = e.String("PAYMENT_DB_NAME", "delivery_eta", "Postgres database owned by payment-service (created if missing).")
	return c, e.Err()
}
