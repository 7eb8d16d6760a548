package delivery

import (
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Name is the service name used in logs, metrics (application label) and the envelope's producer.
const Name = "delivery-service"

// Config is delivery-service's configuration; Configure documents every variable and its default.
type Config struct {
	service.Common
	Postgres pg.Config
	Group    string
	// DedupRetention is how long inbox records are kept.
	DedupRetention time.Duration
	Rules          Rules
	// SchedulerInterval is how often active deliveries are re-checked (real time).
	SchedulerInterval time.Duration
}

// Configure reads every variable of the service from e (which records them for the generated
// documentation); errors accumulate in e.
func Configure(e *config.Env) Config {
	c := Config{Common: service.LoadCommon(e)}
	c.HTTPAddr = e.String("DELIVERY_HTTP_ADDR", "127.0.0.1:8084", "Listen address of delivery-service.")
	c.OpsAddr = service.OpsAddr(e, "DELIVERY", Name)
	c.Postgres = service.LoadPostgres(e)
	c.Postgres.Database = e.String("DELIVERY_DB_NAME", "delivery_db", "Postgres database owned by delivery-service (created if missing).")
	c.Group = e.String("DELIVERY_CONSUMER_GROUP", event.GroupDelivery, "Kafka consumer group. Committed offsets belong to it: change it only on purpose (tests use a fresh one).")
	c.Rules = Rules{
		Drivers:      e.Int("DELIVERY_DRIVERS", 20, "Drivers seeded at start-up (existing drivers are kept)."),
		Capacity:     e.Int("DELIVERY_DRIVER_CAPACITY", 5, "Most active deliveries per driver; when every driver is full, orders wait in the driver queue, first come, first served."),
		Speed:        float64(e.Int("DELIVERY_TIME_SPEED", 60, "Simulated minutes per real minute: 60 makes a 45-minute delivery take 45 s (demos, tests); 1 is real time (production).")),
		EtaThreshold: e.Duration("DELIVERY_ETA_THRESHOLD", time.Minute, "Smallest simulated ETA change that is published as eta.updated."),
	}
	c.SchedulerInterval = e.Duration("DELIVERY_SCHEDULER_INTERVAL", 30*time.Second, "How often active deliveries get a recalculated ETA (real time).")
	e.Check(c.Rules.Drivers > 0 && c.Rules.Drivers <= 100000, "DELIVERY_DRIVERS must be between 1 and 100000")
	e.Check(c.Rules.Capacity > 0, "DELIVERY_DRIVER_CAPACITY must be positive")
	e.Check(c.Rules.Speed >= 1, "DELIVERY_TIME_SPEED must be at least 1")
	e.Check(c.SchedulerInterval > 0, "DELIVERY_SCHEDULER_INTERVAL must be positive")
	c.DedupRetention = service.DedupRetention(e)
	return c
}
