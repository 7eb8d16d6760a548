package query

import (
	"net/url"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Name is the service name used in logs, metrics (application label) and the envelope's producer.
const Name = "query-api"

// Config is query-api's configuration; Configure documents every variable and its default.
type Config struct {
	service.Common
	Cassandra cass.Config
	Group     string
	Store     string // cassandra or memory
	OrderAPI  string // order-service base URL the tracking page posts to
	Catalog   string // catalog file the tracking page offers
	Traces    string // Jaeger query API base URL for the page's waterfall ("" none)
	// WriteBatch and WriteConcurrency shape the projection's Cassandra writes (see WriteCoalescer).
	WriteBatch       int
	WriteConcurrency int
	Streams          StreamLimits
}

// Configure reads every variable of the service from e (which records them for the generated
// documentation); errors accumulate in e.
func Configure(e *config.Env) Config {
	c := Config{Common: service.LoadCommon(e), Cassandra: service.LoadCassandra(e)}
	c.HTTPAddr = e.String("QUERY_HTTP_ADDR", "127.0.0.1:8080", "Listen address of query-api.")
	c.OpsAddr = service.OpsAddr(e, "QUERY", Name)
	c.Group = e.String("QUERY_CONSUMER_GROUP", event.GroupQuery, "Kafka consumer group. Committed offsets belong to it: change it only on purpose (tests use a fresh one).")
	c.Store = e.String("QUERY_STORE", "cassandra", "Read-model store: cassandra, or memory (rebuilt from the topics at every start; development mode).")
	e.Check(c.Store == "cassandra" || c.Store == "memory", "QUERY_STORE must be cassandra or memory")
	c.OrderAPI = e.String("QUERY_ORDER_API_URL", "http://127.0.0.1:8081", "order-service base URL the tracking page (served at /) sends new orders to; order-service must allow this page's origin (ORDER_CORS_ORIGINS).")
	c.Catalog = e.String("QUERY_CATALOG_FILE", "", "Catalog whose items the tracking page offers: the same file as INVENTORY_CATALOG_FILE (empty: the built-in catalog inventory-service seeds by default).")
	c.Traces = e.String("QUERY_TRACES_URL", "", "Base URL of a trace backend speaking Jaeger's query API (Jaeger: http://127.0.0.1:16686) from which GET /api/orders/{orderId}/trace and the tracking page's waterfall read an order's trace; empty: none. orderflow dev points it at its in-process trace store.")
	if c.Traces != "" {
		u, err := url.Parse(c.Traces)
		e.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", "QUERY_TRACES_URL must be an http or https URL, not %q", c.Traces)
	}
	c.WriteBatch = e.Int("QUERY_WRITE_BATCH", 32, "Most events the projection sends to Cassandra in one request (an unlogged batch across orders, formed only from writes already waiting, never by delaying one). 1 sends each event alone: use it on a large cluster, where a batch spanning many partitions loads its coordinator.")
	c.WriteConcurrency = e.Int("QUERY_WRITE_CONCURRENCY", 4, "Write requests to Cassandra in flight at most. Two take queued writes at once; the others join only while writes queue up (half a batch waiting), so light load makes larger batches and heavy load still keeps the projection up (at 300 orders/s on 2 cores, 2 in all fell behind).")
	c.Streams = StreamLimits{
		PerClient: e.Int("QUERY_SSE_MAX_PER_CLIENT", 8, "Order streams (GET /api/orders/{id}/stream) one client address may hold open at once; beyond it 429."),
		Total:     e.Int("QUERY_SSE_MAX_STREAMS", 1000, "Order streams open at once on this replica, all clients together; beyond it 429."),
		Idle:      e.Duration("QUERY_SSE_IDLE_TIMEOUT", 5*time.Minute, "An order stream whose view did not change for this long is closed (an \"end\" event with reason idle)."),
	}
	e.Check(c.Streams.PerClient >= 1 && c.Streams.Total >= c.Streams.PerClient, "QUERY_SSE_MAX_PER_CLIENT must be at least 1 and at most QUERY_SSE_MAX_STREAMS")
	e.Check(c.Streams.Idle > 0, "QUERY_SSE_IDLE_TIMEOUT must be positive")
	e.Check(c.WriteBatch >= 1 && c.WriteBatch <= 256, "QUERY_WRITE_BATCH must be between 1 and 256")
	e.Check(c.WriteConcurrency >= 1 && c.WriteConcurrency <= 64, "QUERY_WRITE_CONCURRENCY must be between 1 and 64")
	return c
}
