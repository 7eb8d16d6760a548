package delivery

import (
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Name is the service name used in logs, metrics (application label) and the envelope's producer.
const Name = "delivery-service"

// Config is delivery-service's configuration; LoadConfig documents every variable and its default.
type Config struct {
	service.Common
	HTTPAddr string
}

// LoadConfig reads the configuration from getenv and validates it.
func LoadConfig(getenv func(string) string) (Config, error) {
	e := config.New(getenv)
	c := Config{Common: service.LoadCommon(e)}
	c.HTTPAddr = e.String("DELIVERY_HTTP_ADDR", "127.0.0.1:8084", "Listen address of delivery-service.")
	c.Postgres.Database = e.String("DELIVERY_DB_NAME", "delivery_db", "Postgres database owned by delivery-service (created if missing).")
	return c, e.Err()
}
