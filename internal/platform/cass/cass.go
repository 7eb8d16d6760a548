// Package cass connects to Cassandra with the Apache Cassandra Go driver, creates the keyspace, and
// applies versioned CQL migrations.
package cass

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Config locates the cluster.
type Config struct {
	Hosts       []string
	Port        int
	LocalDC     string // data center of the local node; "dc1" on our infrastructure
	Keyspace    string
	Replication string // CQL replication map, e.g. {'class':'SimpleStrategy','replication_factor':1}
	Username    string
	Password    string // secret
	Timeout     time.Duration
	Consistency gocql.Consistency
	TLS         *tls.Config  // nil: plaintext; host names are verified
	Tracer      trace.Tracer // traces every statement and batch inside a traced operation (nil: off)
}

func (c Config) cluster(keyspace string) *gocql.ClusterConfig {
	cl := gocql.NewCluster(c.Hosts...)
	if c.Port > 0 {
		cl.Port = c.Port
	}
	cl.Keyspace = keyspace
	cl.Timeout = c.Timeout
	if cl.Timeout <= 0 {
		cl.Timeout = 5 * time.Second
	}
	cl.ConnectTimeout = cl.Timeout
	// The driver's write coalescing hands every request to a flusher goroutine that waits 200 µs for
	// more: two extra wake-ups, a timer and 200 µs per request. The projection batches its writes
	// itself, so requests are written at once.
	cl.WriteCoalesceWaitTime = 0
	if c.Tracer != nil {
		o := observer{c.Tracer}
		cl.QueryObserver, cl.BatchObserver = o, o
	}
	cl.Consistency = c.Consistency
	if cl.Consistency == 0 {
		cl.Consistency = gocql.LocalQuorum
	}
	if c.LocalDC != "" {
		cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(c.LocalDC))
	}
	if c.Username != "" {
		cl.Authenticator = gocql.PasswordAuthenticator{Username: c.Username, Password: c.Password}
	}
	if c.TLS != nil {
		cl.SslOpts = &gocql.SslOptions{Config: c.TLS.Clone(), EnableHostVerification: true}
	}
	return cl
}

// Connect ensures the keyspace exists and returns a session bound to it.
func Connect(ctx context.Context, c Config) (*gocql.Session, error) {
	sys, err := c.cluster("").CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connect to cassandra %v: %w", c.Hosts, err)
	}
	repl := c.Replication
	if repl == "" {
		repl = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
	}
	// Keyspace names cannot be bound parameters; Keyspace is validated by the config as an identifier.
	err = sys.Query(fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", c.Keyspace, repl)).
		ExecContext(ctx)
	sys.Close()
	if err != nil {
		return nil, fmt.Errorf("create keyspace %s: %w", c.Keyspace, err)
	}
	s, err := c.cluster(c.Keyspace).CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connect to keyspace %s: %w", c.Keyspace, err)
	}
	return s, nil
}

// Check is a health check: a read of system.local reporting the data center and version.
func Check(s *gocql.Session) func(ctx context.Context) (map[string]any, error) {
	return func(ctx context.Context) (map[string]any, error) {
		var dc, version string
		if err := s.Query("SELECT data_center, release_version FROM system.local").ScanContext(ctx, &dc, &version); err != nil {
			return nil, err
		}
		return map[string]any{"dataCenter": dc, "version": version}, nil
	}
}

// observer turns the driver's observations into client spans, only below a recorded span (a
// health check's query starts no trace). The driver reports start and end, so the span is made
// after the fact with those times.
type observer struct{ t trace.Tracer }

func (o observer) ObserveQuery(ctx context.Context, q gocql.ObservedQuery) {
	o.span(ctx, "cassandra query", q.Start, q.End, q.Err, attribute.String("db.query.text", q.Statement),
		attribute.Int("cassandra.attempt", q.Attempt))
}

func (o observer) ObserveBatch(ctx context.Context, b gocql.ObservedBatch) {
	o.span(ctx, "cassandra batch", b.Start, b.End, b.Err, attribute.Int("db.operation.batch.size", len(b.Statements)),
		attribute.Int("cassandra.attempt", b.Attempt))
}

func (o observer) span(ctx context.Context, name string, start, end time.Time, err error, attrs ...attribute.KeyValue) {
	parents, shared := ctx.Value(sharedKey{}).([]trace.Span)
	if !shared {
		parents = []trace.Span{trace.SpanFromContext(ctx)}
	}
	attrs = append(attrs, attribute.String("db.system.name", "cassandra"), attribute.Int("orderflow.shared_by", len(parents)))
	for _, p := range parents {
		if p == nil || !p.IsRecording() {
			continue
		}
		_, span := o.t.Start(trace.ContextWithSpan(ctx, p), name, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attrs...))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End(trace.WithTimestamp(end))
	}
}

type sharedKey struct{}

// Shared marks ctx for a statement or batch sent on behalf of several traced operations (writes
// coalesced into one request): each of parents gets its own span of it, so every order's trace
// shows the write that carried its event. Without parents, ctx is returned as it is.
func Shared(ctx context.Context, parents []trace.Span) context.Context {
	if len(parents) == 0 || len(parents) == 1 && parents[0] == nil {
		return ctx
	}
	return context.WithValue(ctx, sharedKey{}, parents)
}
