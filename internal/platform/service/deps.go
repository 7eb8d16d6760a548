package service

import (
	"context"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/redislock"
)

// retry calls fn until it succeeds or ctx ends, backing off from 200ms to 5s, so a service started
// before its dependency waits for it instead of crash-looping.
func (s *Service) retry(ctx context.Context, what string, fn func() error) error {
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		s.Log.Warn("dependency not available, retrying", "dependency", what, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// Postgres opens the service's database (creating it and running migrations), registers the
// "postgres" health check and closes the pool on shutdown.
func (s *Service) Postgres(ctx context.Context, c pg.Config, migrations ...pg.Migrations) (*pgxpool.Pool, error) {
	if c.Unverified() {
		s.Log.Warn("POSTGRES_SSLMODE does not verify the Postgres server (POSTGRES_SSL_ALLOW_UNVERIFIED): a machine in the middle can read and change every query", "sslmode", c.SSLMode)
	}
	var pool *pgxpool.Pool
	if s.Tracing != nil {
		c.Tracer = pg.RecordedOnly(otelpgx.NewTracer(otelpgx.WithTracerProvider(s.Tracing.Provider),
			otelpgx.WithDisableConnectionDetailsInAttributes(), otelpgx.WithDisableAcquireTracer()))
	}
	err := s.retry(ctx, "postgres "+c.Redacted(), func() (err error) {
		pool, err = pg.Open(ctx, c, migrations...)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Health.AddCheck("postgres", pg.Ping(pool))
	s.OnClose(pool.Close)
	return pool, nil
}

// Redis returns a client, registers the "redis" health check and closes it on shutdown. The
// client connects lazily: Redis being down at start-up is reported, not fatal.
func (s *Service) Redis(c redislock.Config) *redis.Client {
	cl := redislock.NewClient(c)
	if s.Tracing != nil {
		if err := redisotel.InstrumentTracing(cl, redisotel.WithTracerProvider(s.Tracing.Provider),
			redisotel.WithCallerEnabled(false), redisotel.WithDialFilter(true), redisotel.WithDBStatement(false)); err != nil {
			s.Log.Warn("Redis commands are not traced", "err", err)
		}
	}
	s.Health.AddCheck("redis", redislock.Check(cl))
	s.OnClose(func() { _ = cl.Close() })
	return cl
}

// Cassandra connects (creating the keyspace), registers the "cassandra" health check and closes
// the session on shutdown.
func (s *Service) Cassandra(ctx context.Context, c cass.Config) (*gocql.Session, error) {
	var sess *gocql.Session
	if s.Tracing != nil {
		c.Tracer = s.Tracing.Tracer("github.com/orderflow/orderflow/internal/platform/cass")
	}
	err := s.retry(ctx, "cassandra", func() (err error) {
		sess, err = cass.Connect(ctx, c)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Health.AddCheck("cassandra", cass.Check(sess))
	s.OnClose(sess.Close)
	return sess, nil
}
