//go:build devmode

package devmode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	embeddedpostgres "github.com/fergusstrange/embedded-postgres"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/orderflow/orderflow/internal/tracestore"
)

// Servers are the running embedded servers.
type Servers struct {
	kafka *kfake.Cluster
	redis *miniredis.Miniredis
	pg    *embeddedpostgres.EmbeddedPostgres
	trace *http.Server
	// Env is what the services need to reach them (added to their environment).
	Env map[string]string
	// Traces is the base URL of the in-process trace store (OTLP/HTTP in, Jaeger's query API out).
	Traces string
}

// Start starts the three servers (Postgres first: the slowest, and the only one that downloads).
// On error everything already started is stopped.
func Start(ctx context.Context, c Config, log io.Writer) (_ *Servers, err error) {
	if err := os.MkdirAll(c.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("dev data folder: %w", err)
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil, err
	}
	c.Dir = dir
	if err := dropRoot(c); err != nil {
		return nil, err
	}
	s := &Servers{}
	defer func() {
		if err != nil {
			_ = s.Stop() // the start error is what matters
		}
	}()
	cache, err := cacheDir(dir)
	if err != nil {
		return nil, err
	}
	stopOrphan(filepath.Join(dir, "postgres"), log)
	pg := embeddedpostgres.NewDatabase(embeddedpostgres.DefaultConfig().
		Version(embeddedpostgres.V15).Port(uint32(c.PostgresPort)). //nolint:gosec // Configure checks it is a TCP port
		Username("postgres").Password("postgres").Database("postgres").
		DataPath(filepath.Join(dir, "postgres")).RuntimePath(filepath.Join(dir, "postgres-run")).
		CachePath(cache).StartTimeout(2 * time.Minute).Logger(log))
	if err := pg.Start(); err != nil {
		return nil, fmt.Errorf("embedded postgres (first start downloads it from Maven Central into %s): %w", cache, err)
	}
	s.pg = pg
	s.kafka, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(c.KafkaPort), kfake.DataDir(filepath.Join(dir, "kafka")),
		kfake.ClusterID("orderflow-dev"))
	if err != nil {
		return nil, fmt.Errorf("embedded kafka on port %d: %w", c.KafkaPort, err)
	}
	s.redis = miniredis.NewMiniRedis()
	if err := s.redis.StartAddr(fmt.Sprintf("127.0.0.1:%d", c.RedisPort)); err != nil {
		s.redis = nil
		return nil, fmt.Errorf("embedded redis on port %d: %w", c.RedisPort, err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.TracesPort))
	if err != nil {
		return nil, fmt.Errorf("trace store on port %d: %w", c.TracesPort, err)
	}
	s.trace = &http.Server{Handler: tracestore.New(2000).Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.trace.Serve(ln) }()
	s.Traces = "http://" + ln.Addr().String()
	s.Env = map[string]string{
		"KAFKA_BROKERS":    s.kafka.ListenAddrs()[0],
		"POSTGRES_HOST":    "127.0.0.1",
		"POSTGRES_PORT":    strconv.Itoa(c.PostgresPort),
		"POSTGRES_USER":    "postgres",
		"REDIS_ADDR":       s.redis.Addr(),
		"QUERY_STORE":      "memory",
		"POSTGRES_SSLMODE": "disable",
	}
	return s, ctx.Err()
}

// Stop stops every server that runs (Postgres last: the services may still be closing).
func (s *Servers) Stop() error {
	var errs []error
	if s.trace != nil {
		_ = s.trace.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.pg != nil {
		errs = append(errs, s.pg.Stop())
	}
	return errors.Join(errs...)
}

// stopOrphan stops a Postgres left running on dataDir by a dev run that was killed (SIGKILL gives
// it no chance to stop its child); otherwise the port stays taken and the next start fails.
func stopOrphan(dataDir string, log io.Writer) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid")) //nolint:gosec // inside the dev data folder
	if err != nil {
		return
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return
	}
	fmt.Fprintf(log, "stopping the Postgres (pid %d) a previous dev run left behind\n", pid)
	_ = syscall.Kill(pid, syscall.SIGINT) // fast shutdown
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// cacheDir is where the Postgres binaries are kept between runs: the user's cache folder, or the
// data folder when there is none (e.g. after switching to a user without a home).
func cacheDir(dataDir string) (string, error) {
	if d, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(d, "orderflow", "embedded-postgres")
		if err := os.MkdirAll(p, 0o750); err == nil {
			return p, nil
		}
	}
	p := filepath.Join(dataDir, "cache")
	return p, os.MkdirAll(p, 0o750)
}

// dropRoot switches the whole process to an unprivileged user when it runs as root, after
// handing it the data folder: initdb and postgres refuse root. Go applies setuid to every thread.
func dropRoot(c Config) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(c.RunAs)
	if err != nil {
		return fmt.Errorf("running as root: Postgres needs an unprivileged user (DEV_RUN_AS=%s): %w", c.RunAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(c.Dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid) //nolint:gosec // our own data folder, handed over before any server runs
	})
	if err != nil {
		return fmt.Errorf("hand %s to %s: %w", c.Dir, c.RunAs, err)
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop groups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	// A user like nobody has no usable home: keep caches inside the data folder.
	if home := u.HomeDir; home == "" || home == "/nonexistent" || !writable(home) {
		_ = os.Unsetenv("XDG_CACHE_HOME")
		_ = os.Setenv("HOME", c.Dir)
	}
	return nil
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".w")
	if err != nil {
		return false
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
	return true
}
