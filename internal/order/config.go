package order

import (
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Name is the service name used in logs, metrics (application label) and the envelope's producer.
const Name = "order-service"

// Config is order-service's configuration; Configure documents every variable and its default.
type Config struct {
	service.Common
	Postgres pg.Config
	Limits   Limits
	CORS     []string // origins allowed to call the API from a browser
	Group    string   // consumer group following the saga's outcome events
	// DedupRetention is how long Idempotency-Keys are kept.
	DedupRetention time.Duration
	// Deadline is how long an order may take to reach DELIVERY_ASSIGNED before it is cancelled
	// with reason DEADLINE_EXCEEDED.
	Deadline time.Duration
}

// Configure reads every variable of the service from e (which records them for the generated
// documentation); errors accumulate in e.
func Configure(e *config.Env) Config {
	c := Config{Common: service.LoadCommon(e)}
	c.HTTPAddr = e.String("ORDER_HTTP_ADDR", "127.0.0.1:8081", "Listen address of order-service.")
	c.OpsAddr = service.OpsAddr(e, "ORDER", Name)
	c.Postgres = service.LoadPostgres(e)
	c.Postgres.Database = e.String("ORDER_DB_NAME", "order_db", "Postgres database owned by order-service (created if missing).")
	c.Limits = Limits{
		MaxBodyBytes: int64(e.Int("ORDER_MAX_BODY_BYTES", 64<<10, "Largest accepted POST /api/orders body.")),
		MaxItems:     e.Int("ORDER_MAX_ITEMS", 100, "Most lines in one order (more is a 413)."),
		MaxQuantity:  e.Int("ORDER_MAX_QUANTITY", 10000, "Largest quantity of one line."),
	}
	e.Check(c.Limits.MaxBodyBytes > 0 && c.Limits.MaxItems > 0 && c.Limits.MaxQuantity > 0, "ORDER_MAX_* limits must be positive")
	c.Limits = c.Limits.withDefaults()
	c.CORS = e.List("ORDER_CORS_ORIGINS", "", "Origins whose pages may call the API from a browser (e.g. the tracking page, http://127.0.0.1:8080); empty: none (CORS off).")
	c.Group = e.String("ORDER_CONSUMER_GROUP", event.GroupOrder, "Kafka consumer group that follows the saga's outcome events to keep each order's status. Committed offsets belong to it: change it only on purpose (tests use a fresh one).")
	c.DedupRetention = service.DedupRetention(e)
	c.Deadline = e.Duration("ORDER_DEADLINE", 30*time.Minute, "How long an order may take to reach DELIVERY_ASSIGNED (waiting for a driver included); after it, the order is cancelled with reason DEADLINE_EXCEEDED. The sweeper looks every tenth of it (between 100 ms and 10 s).")
	e.Check(c.Deadline >= time.Second, "ORDER_DEADLINE must be at least 1s")
	return c
}
