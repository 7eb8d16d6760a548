package service

import (
	"net/netip"
	"regexp"
	"slices"
	"time"

	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/redislock"
)

// Common is the configuration every service shares. Defaults match the native infrastructure
// (scripts/infra) on 127.0.0.1.
type Common struct {
	HTTPAddr        string // read by each service under its own name (ORDER_HTTP_ADDR, ...)
	OpsAddr         string // likewise (ORDER_OPS_ADDR, ...); empty: the ops endpoints on HTTPAddr
	LogLevel        string
	LogFormat       string
	Pprof           bool
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
	Kafka           kafka.Config
	Guard           httpx.GuardConfig
	Tracing         obs.TraceConfig
	// Settings is every variable the service read with its effective value, secrets masked (logged
	// at start-up); Load fills it last.
	Settings map[string]string
}

func (c *Common) common() *Common { return c }

// Load reads a service's configuration (a struct embedding Common) with configure, which reads
// every variable through e, and validates it.
func Load[C any, P interface {
	*C
	common() *Common
}](getenv func(string) string, configure func(e *config.Env) C) (C, error) {
	e := config.New(getenv)
	c := configure(e)
	P(&c).common().Settings = e.Settings()
	return c, e.Err()
}

// OpsAddr reads <prefix>_OPS_ADDR, where service serves its ops endpoints apart from its API.
func OpsAddr(e *config.Env, prefix, service string) string {
	return e.String(prefix+"_OPS_ADDR", "", "Listen address of "+service+"'s ops endpoints (/healthz, /readyz, /health, /metrics, /info, /debug/pprof/*) apart from its API, so they are not reachable wherever the API is published (the Kubernetes manifests use ports 9080-9084). Empty: served on the API's address.")
}

// DedupRetention reads how long a service keeps what makes a repeated input harmless (inbox records,
// Idempotency-Keys).
func DedupRetention(e *config.Env) time.Duration {
	d := e.Duration("DEDUP_RETENTION", 8*24*time.Hour, "How long a processed event's inbox record and an Idempotency-Key are kept before the periodic purge deletes them. Keep it longer than the topics' retention (7 days by default): an event redelivered after its record was purged would be applied again.")
	e.Check(d > 0, "DEDUP_RETENTION must be positive")
	return d
}

// guardConfig reads the access policy. In Kubernetes (KUBERNETES_SERVICE_HOST is set in every pod)
// loopback is not trusted by default, because a sidecar proxy makes every request arrive from it.
// A service that trusts no loopback client needs ADMIN_TOKEN (New refuses to start without it);
// the command-line tools read the same variables and serve nothing.
func guardConfig(e *config.Env) httpx.GuardConfig {
	inKubernetes := e.String("KUBERNETES_SERVICE_HOST", "", "Set by Kubernetes in every pod (not by hand): when set, TRUST_LOOPBACK defaults to false.") != ""
	trust := e.Bool("TRUST_LOOPBACK", !inKubernetes, "Treat loopback clients as local: operator endpoints answer them while ADMIN_TOKEN is unset, and RATE_LIMIT_EXEMPT_LOOPBACK may exempt them from the rate limit. Default true, false in Kubernetes, where a sidecar proxy (Istio, Linkerd) makes every request arrive from loopback. false requires ADMIN_TOKEN.")
	g := httpx.GuardConfig{
		AdminToken:       e.Secret("ADMIN_TOKEN", "", "Bearer token for operator endpoints (stock, DLQ, payment/delivery/driver look-ups, order listing). Unset: they answer loopback clients only; required when TRUST_LOOPBACK is false (in Kubernetes)."),
		DistrustLoopback: !trust,
		RatePerSecond:    float64(e.Int("RATE_LIMIT_PER_SECOND", 20, "Customer-facing requests per second allowed per client address (0: no limit).")),
		Burst:            e.Int("RATE_LIMIT_BURST", 40, "Requests a client address may send at once before RATE_LIMIT_PER_SECOND applies."),
		ExemptLoopback:   e.Bool("RATE_LIMIT_EXEMPT_LOOPBACK", trust, "Loopback clients (local tools, load runs) are not rate-limited. Default: TRUST_LOOPBACK."),
	}
	for _, p := range e.List("TRUSTED_PROXIES", "", "Comma-separated addresses or CIDR prefixes of proxies whose X-Forwarded-For is believed (the client is the nearest untrusted address in it), e.g. the ingress controller's pod range. Empty: the peer address is the client.") {
		if a, err := netip.ParseAddr(p); err == nil { // one address
			a = a.Unmap()
			g.TrustedProxies = append(g.TrustedProxies, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		e.Check(err == nil, "TRUSTED_PROXIES: %q is not an address or CIDR prefix", p)
		g.TrustedProxies = append(g.TrustedProxies, prefix.Masked())
	}
	e.Check(trust || !g.ExemptLoopback, "RATE_LIMIT_EXEMPT_LOOPBACK=true needs TRUST_LOOPBACK=true")
	e.Check(g.RatePerSecond >= 0 && g.Burst > 0, "RATE_LIMIT_PER_SECOND must be >= 0 and RATE_LIMIT_BURST positive")
	return g
}

// postgresSSLMode applies the TLS policy: verification whenever a CA is given, and no TLS that
// skips verification unless allowed by name.
func postgresSSLMode(e *config.Env, mode, ca string, allowUnverified bool) string {
	switch {
	case mode == "" && ca != "":
		return "verify-full"
	case mode == "":
		return "disable"
	case mode == "verify-full":
	case mode == "disable":
		e.Check(ca == "", "POSTGRES_SSLROOTCERT is set but POSTGRES_SSLMODE is disable")
	case mode == "require" || mode == "verify-ca" || mode == "prefer" || mode == "allow":
		e.Check(allowUnverified, "POSTGRES_SSLMODE=%s does not verify the server's identity: use verify-full with POSTGRES_SSLROOTCERT, or set POSTGRES_SSL_ALLOW_UNVERIFIED=true to accept it", mode)
	default:
		e.Check(false, "POSTGRES_SSLMODE must be verify-full or disable (or, with POSTGRES_SSL_ALLOW_UNVERIFIED, require, verify-ca, prefer or allow), not %q", mode)
	}
	return mode
}

var identifier = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,47}$`)

// LoadCommon reads the shared variables.
func LoadCommon(e *config.Env) Common {
	c := Common{
		LogLevel:        e.String("LOG_LEVEL", "info", "Log level: debug, info, warn or error (debug adds each service's full configuration at start-up)."),
		LogFormat:       e.String("LOG_FORMAT", "auto", "Log format: json (one JSON object a line, for log pipelines), text (one readable line a record, coloured on a terminal unless NO_COLOR is set), or auto: text when standard output is a terminal, json otherwise (containers, files, pipes). orderflow dev defaults to text."),
		Pprof:           e.Bool("PPROF_ENABLE", false, "Serve Go profiles under /debug/pprof/ on each service's port (profiling under load; keep off in production)."),
		DrainDelay:      e.Duration("SHUTDOWN_DRAIN_DELAY", 0, "On SIGTERM, how long the service keeps serving with /readyz answering 503 before it stops anything, so load balancers take it out first. Set it above the readiness probe's period × failure threshold (Kubernetes manifests: 12s)."),
		ShutdownTimeout: e.Duration("SHUTDOWN_TIMEOUT", 15*time.Second, "Time the whole stop may take after the drain delay (HTTP requests in flight, consumers' last commits, the relay); the process exits within SHUTDOWN_DRAIN_DELAY + SHUTDOWN_TIMEOUT. Keep the sum below Kubernetes' terminationGracePeriodSeconds."),
		Kafka: kafka.Config{
			Brokers:           e.List("KAFKA_BROKERS", "127.0.0.1:9092", "Comma-separated Kafka bootstrap brokers."),
			Partitions:        int32(e.Int("KAFKA_TOPIC_PARTITIONS", 3, "Partitions of each topic created at start-up.")),           //nolint:gosec // checked below: 1..10000
			ReplicationFactor: int16(e.Int("KAFKA_REPLICATION_FACTOR", 1, "Replication factor of each topic created at start-up.")), //nolint:gosec // checked below: 1..10
			TLS:               clientTLS(e, "KAFKA", "the Kafka brokers"),
			SASL:              kafkaSASL(e),
			Compression:       e.String("KAFKA_COMPRESSION", "none", "Compression of produced record batches: none, snappy, lz4, zstd or gzip (none suits small records on a fast network)."),
			FetchMaxWait:      e.Duration("KAFKA_FETCH_MAX_WAIT", 500*time.Millisecond, "The consumers' fetch.max.wait.ms: the longest the broker holds a fetch waiting for KAFKA_FETCH_MIN_BYTES."),
		},
	}
	minBytes := e.Int("KAFKA_FETCH_MIN_BYTES", 1, "The consumers' fetch.min.bytes: the broker holds a fetch until this much is there, or KAFKA_FETCH_MAX_WAIT has passed. Above 1 a consumer fetches less often, in larger batches (fewer requests and transactions per record), at the price of up to KAFKA_FETCH_MAX_WAIT per hop when the load is light.")
	e.Check(minBytes >= 1 && minBytes <= 64<<20, "KAFKA_FETCH_MIN_BYTES must be from 1 to 67108864")
	c.Kafka.FetchMinBytes = int32(min(max(minBytes, 1), 64<<20)) //nolint:gosec // clamped to 1..64 MiB
	c.Tracing = obs.LoadTraceConfig(e)
	c.Guard = guardConfig(e)
	e.Check(slices.Contains(obs.LogFormats, c.LogFormat), "LOG_FORMAT must be json, text or auto")
	e.Check(len(c.Kafka.Brokers) > 0, "KAFKA_BROKERS must name at least one broker")
	e.Check(c.Kafka.Partitions > 0 && c.Kafka.Partitions <= 10000, "KAFKA_TOPIC_PARTITIONS must be from 1 to 10000")
	e.Check(c.Kafka.ReplicationFactor > 0 && c.Kafka.ReplicationFactor <= 10, "KAFKA_REPLICATION_FACTOR must be from 1 to 10")
	_, codecErr := c.Kafka.Codec()
	e.Check(codecErr == nil, "KAFKA_COMPRESSION must be none, snappy, lz4, zstd or gzip")
	e.Check(c.Kafka.FetchMaxWait >= time.Millisecond && c.Kafka.FetchMaxWait <= 30*time.Second, "KAFKA_FETCH_MAX_WAIT must be from 1ms to 30s")
	e.Check(c.ShutdownTimeout > 0, "SHUTDOWN_TIMEOUT must be positive")
	e.Check(c.DrainDelay >= 0, "SHUTDOWN_DRAIN_DELAY must not be negative")
	return c
}

// The engines' settings are read only by what uses each, so a service's variables (cli.Variables)
// name exactly the credentials it needs.

// LoadPostgres reads the Postgres connection (Database is filled per service).
func LoadPostgres(e *config.Env) pg.Config {
	c := pg.Config{
		Host:        e.String("POSTGRES_HOST", "127.0.0.1", "Postgres host."),
		Port:        e.Int("POSTGRES_PORT", 5432, "Postgres port."),
		User:        e.String("POSTGRES_USER", "postgres", "Postgres user."),
		Password:    e.Secret("POSTGRES_PASSWORD", "postgres", "Postgres password (local development default; set it, or POSTGRES_PASSWORD_FILE, in production)."),
		SSLMode:     e.String("POSTGRES_SSLMODE", "", "Postgres sslmode: verify-full (TLS, the server's certificate and host name verified) or disable; empty: verify-full when POSTGRES_SSLROOTCERT is set, else disable. Modes that encrypt without verifying the server (require, verify-ca, prefer, allow) are refused unless POSTGRES_SSL_ALLOW_UNVERIFIED is true."),
		SSLRootCert: e.String("POSTGRES_SSLROOTCERT", "", "PEM CA bundle that signs the Postgres server certificate; setting it makes verify-full the default."),
		SSLCert:     e.String("POSTGRES_SSLCERT", "", "Client certificate (PEM) for Postgres certificate authentication."),
		SSLKey:      e.String("POSTGRES_SSLKEY", "", "Client private key (PEM) for Postgres certificate authentication."),
		MaxConns:    e.Int("POSTGRES_MAX_CONNS", 10, "Maximum connections in each service's pool."),
	}
	allowUnverified := e.Bool("POSTGRES_SSL_ALLOW_UNVERIFIED", false, "Accept a POSTGRES_SSLMODE that does not verify the server (require, verify-ca, prefer, allow); each service logs a warning at start-up. Only for a server whose CA cannot be had.")
	c.SSLMode = postgresSSLMode(e, c.SSLMode, c.SSLRootCert, allowUnverified)
	e.Check(c.Port > 0 && c.Port < 65536, "POSTGRES_PORT must be a TCP port")
	e.Check(c.MaxConns > 0, "POSTGRES_MAX_CONNS must be positive")
	return c
}

// LoadRedis reads the Redis connection (payment-service).
func LoadRedis(e *config.Env) redislock.Config {
	return redislock.Config{
		Addr:     e.String("REDIS_ADDR", "127.0.0.1:6379", "Redis address (payment-service)."),
		Username: e.String("REDIS_USERNAME", "", "Redis ACL user (empty: the default user)."),
		Password: e.Secret("REDIS_PASSWORD", "", "Redis password (or REDIS_PASSWORD_FILE)."),
		TLS:      clientTLS(e, "REDIS", "Redis"),
	}
}

// LoadCassandra reads the Cassandra connection (query-api, verify).
func LoadCassandra(e *config.Env) cass.Config {
	c := cass.Config{
		Hosts:       e.List("CASSANDRA_HOSTS", "127.0.0.1", "Comma-separated Cassandra contact points (query-api)."),
		Port:        e.Int("CASSANDRA_PORT", 9042, "Cassandra native protocol port."),
		LocalDC:     e.String("CASSANDRA_LOCAL_DC", "dc1", "Cassandra local data center."),
		Keyspace:    e.String("CASSANDRA_KEYSPACE", "delivery_query", "Cassandra keyspace of the read model."),
		Replication: e.String("CASSANDRA_REPLICATION", "{'class': 'SimpleStrategy', 'replication_factor': 1}", "CQL replication map used when creating the keyspace."),
		Username:    e.String("CASSANDRA_USERNAME", "", "Cassandra user (empty: no authentication)."),
		Password:    e.Secret("CASSANDRA_PASSWORD", "", "Cassandra password (or CASSANDRA_PASSWORD_FILE)."),
		TLS:         clientTLS(e, "CASSANDRA", "Cassandra"),
	}
	e.Check(identifier.MatchString(c.Keyspace), "CASSANDRA_KEYSPACE must be a CQL identifier")
	e.Check(c.Username == "" || c.Password != "", "CASSANDRA_USERNAME is set without CASSANDRA_PASSWORD (or CASSANDRA_PASSWORD_FILE)")
	return c
}
