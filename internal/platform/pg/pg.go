// Package pg opens Postgres pools, creates a service's database when it is missing, runs embedded
// migrations with goose, and runs transactions that retry serialization failures and deadlocks.
package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

// Config locates a Postgres server and one database on it.
type Config struct {
	Host     string
	Port     int
	User     string
	Password string // secret: never logged
	Database string
	SSLMode  string // disable or verify-full (others only when explicitly allowed; see Unverified)
	// SSLRootCert, SSLCert and SSLKey are libpq's sslrootcert, sslcert and sslkey (PEM files).
	SSLRootCert, SSLCert, SSLKey string
	MaxConns                     int
	Tracer                       pgx.QueryTracer // traces every query (nil: tracing off)
}

// URL renders the connection string for database db (the password is included: do not log it).
func (c Config) URL(db string) string {
	u := url.URL{Scheme: "postgres", Host: c.Host + ":" + strconv.Itoa(c.Port), Path: "/" + db,
		User: url.UserPassword(c.User, c.Password)}
	q := url.Values{}
	q.Set("sslmode", c.SSLMode)
	for k, v := range map[string]string{"sslrootcert": c.SSLRootCert, "sslcert": c.SSLCert, "sslkey": c.SSLKey} {
		if v != "" {
			q.Set(k, v)
		}
	}
	q.Set("application_name", "orderflow")
	u.RawQuery = q.Encode()
	return u.String()
}

// Unverified reports a mode that may encrypt but does not verify the server's identity.
func (c Config) Unverified() bool {
	return c.SSLMode != "disable" && c.SSLMode != "verify-full"
}

// Redacted describes the target without the password, for logs.
func (c Config) Redacted() string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=%s", c.User, c.Host, c.Port, c.Database, c.SSLMode)
}

// EnsureDatabase creates c.Database if it does not exist, connecting to the maintenance database
// "postgres". A concurrent creator winning the race is not an error.
func EnsureDatabase(ctx context.Context, c Config) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to maintenance database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", c.Database).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", c.Database, err)
	}
	if exists {
		return nil
	}
	// CREATE DATABASE takes no parameters; the name is quoted as an identifier.
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{c.Database}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505") {
		return nil // created concurrently
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", c.Database, err)
	}
	return nil
}

// Migrations is one set of goose SQL files (at the root of FS) with its own version table, so the
// platform's tables (outbox, inbox) and a service's tables are versioned independently.
type Migrations struct {
	Table string // goose version table, e.g. "goose_outbox"
	FS    fs.FS
}

// Open creates the database if needed, applies every migration set in order and returns a pool.
func Open(ctx context.Context, c Config, migrations ...Migrations) (*pgxpool.Pool, error) {
	if err := EnsureDatabase(ctx, c); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(c.URL(c.Database))
	if err != nil {
		return nil, fmt.Errorf("postgres config: %w", err)
	}
	if c.MaxConns > 0 {
		pc.MaxConns = int32(min(c.MaxConns, 10_000)) //nolint:gosec // bounded just here
	}
	pc.ConnConfig.Tracer = c.Tracer
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open pool %s: %w", c.Redacted(), err)
	}
	for _, m := range migrations {
		if err := Migrate(ctx, pool, m); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return pool, nil
}

// Migrate applies one migration set. goose takes a Postgres advisory lock, so replicas starting
// together do not race.
func Migrate(ctx context.Context, pool *pgxpool.Pool, m Migrations) error {
	db := stdlib.OpenDBFromPool(pool)
	defer func() { _ = db.Close() }() // closing the migration handle; the pool is separate
	store, err := database.NewStore(database.DialectPostgres, m.Table)
	if err != nil {
		return fmt.Errorf("migrations %s: %w", m.Table, err)
	}
	p, err := goose.NewProvider("", db, m.FS, goose.WithStore(store), goose.WithSessionLocker(mustLocker()))
	if err != nil {
		return fmt.Errorf("migrations %s: %w", m.Table, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations %s: %w", m.Table, err)
	}
	return nil
}

// Ping is a health check: one round trip, reporting pool statistics.
func Ping(pool *pgxpool.Pool) func(ctx context.Context) (map[string]any, error) {
	return func(ctx context.Context) (map[string]any, error) {
		st := pool.Stat()
		d := map[string]any{"database": pool.Config().ConnConfig.Database, "totalConns": st.TotalConns(), "idleConns": st.IdleConns()}
		var one int
		if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			return d, err
		}
		return d, nil
	}
}

// InTxAttempts bounds how often InTx retries a serialization failure or deadlock.
const InTxAttempts = 5

// InTx runs fn in a transaction and commits it, returning the commit's error. A serialization
// failure (40001) or deadlock (40P01), from fn or the commit, rolls back and runs fn again, up to
// InTxAttempts times; fn must therefore have no side effects outside tx.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return retryConflicts(ctx, func() error { return pgx.BeginFunc(ctx, pool, fn) })
}

// retryConflicts runs attempt until it succeeds, fails with an error other than a serialization
// failure or deadlock, or has failed InTxAttempts times, with a growing, jittered pause between.
func retryConflicts(ctx context.Context, attempt func() error) error {
	var err error
	for n := 1; n <= InTxAttempts; n++ {
		err = attempt()
		if err == nil || !Retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(n*n) * time.Duration(1+rand.IntN(5)) * time.Millisecond): //nolint:gosec // retry jitter, not a secret
		}
	}
	return fmt.Errorf("transaction failed after %d attempts: %w", InTxAttempts, err)
}

// Retryable reports a serialization failure or deadlock.
func Retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// IsUniqueViolation reports a unique-constraint violation, optionally on one named constraint.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && (constraint == "" || pgErr.ConstraintName == constraint)
}

func mustLocker() lock.SessionLocker {
	l, err := lock.NewPostgresSessionLocker()
	if err != nil {
		panic(err) // only fails on invalid options, which are constant here
	}
	return l
}

// IsUnavailable reports errors that mean "the database cannot be reached right now" (connection
// refused or lost, server shutting down or starting, timeouts) as opposed to errors in the statement
// or the data. Consumers retry the former without limit instead of dead-lettering the event.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now;
		// 53300: too many connections.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" ||
			pgErr.Code == "57P03" || pgErr.Code == "53300"
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, pgx.ErrTxCommitRollback) || pgconn.SafeToRetry(err)
}

// EmbeddedMigrations returns the migration set in directory dir of fsys (an embed.FS holding
// dir/*.sql), versioned in its own goose table.
func EmbeddedMigrations(fsys fs.FS, dir, table string) Migrations {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a constant next to a go:embed directive; fs.Sub fails only on an invalid path
	}
	return Migrations{Table: table, FS: sub}
}
