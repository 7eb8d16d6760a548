package query

import (
	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Name is the service name used in logs, metrics (application label) and the envelope's producer.
const Name = "query-api"

// Config is query-api's configuration; LoadConfig documents every variable and its default.
type Config struct {
	service.Common
	HTTPAddr string
	Group    string
	Store    string // cassandra or memory
	OrderAPI string // order-service base URL the tracking page posts to
	Catalog  string // catalog file the tracking page offers
}

// Configure reads every variable of the service from e (which records them for the generated
// documentation); errors accumulate in e.
func Configure(e *config.Env) Config {
	c := Config{Common: service.LoadCommon(e)}
	c.HTTPAddr = e.String("QUERY_HTTP_ADDR", "127.0.0.1:8080", "Listen address of query-api.")
	c.Group = e.String("QUERY_CONSUMER_GROUP", event.GroupQuery, "Kafka consumer group. Committed offsets belong to it: change it only on purpose (tests use a fresh one).")
	c.Store = e.String("QUERY_STORE", "cassandra", "Read-model store: cassandra, or memory (rebuilt from the topics at every start; development mode).")
	e.Check(c.Store == "cassandra" || c.Store == "memory", "QUERY_STORE must be cassandra or memory")
	c.OrderAPI = e.String("QUERY_ORDER_API_URL", "http://127.0.0.1:8081", "order-service base URL the tracking page (served at /) sends new orders to; order-service must allow this page's origin (ORDER_CORS_ORIGINS).")
	c.Catalog = e.String("QUERY_CATALOG_FILE", "", "Catalog whose items the tracking page offers: the same file as INVENTORY_CATALOG_FILE (empty: the built-in catalog inventory-service seeds by default).")
	return c
}

// LoadConfig reads the configuration from getenv and validates it.
func LoadConfig(getenv func(string) string) (Config, error) {
	e := config.New(getenv)
	c := Configure(e)
	c.Settings = e.Settings()
	return c, e.Err()
}
