package inventory

import (
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Name is the service name used in logs, metrics (application label) and the envelope's producer.
const Name = "inventory-service"

// Config is inventory-service's configuration; Configure documents every variable and its default.
type Config struct {
	service.Common
	Postgres    pg.Config
	CatalogFile string
	Group       string
	// DedupRetention is how long inbox records are kept.
	DedupRetention time.Duration
}

// Configure reads every variable of the service from e (which records them for the generated
// documentation); errors accumulate in e.
func Configure(e *config.Env) Config {
	c := Config{Common: service.LoadCommon(e)}
	c.HTTPAddr = e.String("INVENTORY_HTTP_ADDR", "127.0.0.1:8083", "Listen address of inventory-service.")
	c.OpsAddr = service.OpsAddr(e, "INVENTORY", Name)
	c.Postgres = service.LoadPostgres(e)
	c.Postgres.Database = e.String("INVENTORY_DB_NAME", "inventory_db", "Postgres database owned by inventory-service (created if missing).")
	c.CatalogFile = e.String("INVENTORY_CATALOG_FILE", "", "JSON catalog seeded at start-up ({\"items\":[{\"itemId\",\"name\",\"stock\"}]}); empty: the built-in 60-item catalog. Existing items keep their stock.")
	c.Group = e.String("INVENTORY_CONSUMER_GROUP", event.GroupInventory, "Kafka consumer group. Committed offsets belong to it: change it only on purpose (tests use a fresh one).")
	c.DedupRetention = service.DedupRetention(e)
	return c
}
