// Package testkit gives integration tests isolated resources on the real servers started by
// scripts/infra: a fresh Postgres database, fresh Kafka topics, a Redis key prefix, a Cassandra keyspace.
//
// Integration tests call Integration(t) first. They run when ORDERFLOW_INTEGRATION=1 (make test sets
// it); otherwise they are skipped with a message saying how to run them, and never count as passed in CI
// because CI always sets the variable.
package testkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// Integration skips t unless ORDERFLOW_INTEGRATION=1.
func Integration(t testing.TB) {
	t.Helper()
	if os.Getenv("ORDERFLOW_INTEGRATION") != "1" {
		t.Skip("integration test: run `make test` (starts the servers and sets ORDERFLOW_INTEGRATION=1)")
	}
}

// Context returns a context cancelled at the end of the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Name returns a short unique lower-case identifier with prefix, usable as a database, topic or keyspace name.
func Name(prefix string) string {
	return prefix + "_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
}

// PGConfig is the local server's configuration without a database.
func PGConfig() pg.Config {
	return pg.Config{Host: "127.0.0.1", Port: 5432, User: "postgres", Password: "postgres", SSLMode: "disable", MaxConns: 20}
}

// NewDatabase returns a config for a fresh, empty database that is dropped when the test ends.
func NewDatabase(t testing.TB) pg.Config {
	t.Helper()
	c := PGConfig()
	c.Database = Name("test")
	ctx := Context(t, 30*time.Second)
	if err := pg.EnsureDatabase(ctx, c); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			t.Logf("drop test database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{c.Database}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database: %v", err)
		}
	})
	return c
}

// KafkaConfig is the local broker's configuration.
func KafkaConfig() kafka.Config { return Local().Kafka }

// Servers are the Kafka and Cassandra a test's services run against; Postgres and Redis are the
// local ones either way.
type Servers struct {
	Kafka     kafka.Config
	Cassandra []string // contact points
	Env       []string // the services' settings that select these servers (none for Local)
}

// Local is the single-node stack of scripts/infra up.
func Local() Servers {
	return Servers{Kafka: kafka.Config{Brokers: []string{"127.0.0.1:9092"}, Partitions: 3, ReplicationFactor: 1, ClientID: "orderflow-test"},
		Cassandra: []string{"127.0.0.1"}}
}

// Cluster starts (if needed) the three Kafka brokers and three Cassandra nodes of scripts/infra up
// --cluster and returns them, with the settings scripts/infra env --cluster gives the services.
func Cluster(t testing.TB) Servers {
	t.Helper()
	Infra(t, "up", "--cluster")
	s := Servers{Kafka: kafka.Config{Partitions: 3, ClientID: "orderflow-test"}}
	for _, kv := range strings.Split(strings.TrimSpace(infraOutput(t, "env", "--cluster")), "\n") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "KAFKA_BROKERS":
			s.Kafka.Brokers = strings.Split(v, ",")
		case "KAFKA_REPLICATION_FACTOR":
			_, _ = fmt.Sscan(v, &s.Kafka.ReplicationFactor)
		case "CASSANDRA_HOSTS":
			s.Cassandra = strings.Split(v, ",")
		}
		s.Env = append(s.Env, kv)
	}
	if len(s.Kafka.Brokers) < 3 || len(s.Cassandra) < 3 || s.Kafka.ReplicationFactor < 3 {
		t.Fatalf("scripts/infra env --cluster does not name three brokers, three nodes and replication 3: %+v", s)
	}
	return s
}

// NewTopics creates fresh topics named prefix_<unique> with partitions each, deleted at the end of
// the test. It returns their names in argument order.
func NewTopics(t testing.TB, partitions int32, prefixes ...string) []string {
	t.Helper()
	cl, err := kgo.NewClient(KafkaConfig().Options()...)
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	names := make([]string, len(prefixes))
	for i, p := range prefixes {
		names[i] = Name(strings.ReplaceAll(p, ".", "_"))
	}
	ctx := Context(t, 60*time.Second)
	resp, err := adm.CreateTopics(ctx, partitions, 1, nil, names...)
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for _, r := range resp {
		if r.Err != nil {
			t.Fatalf("create topic %s: %v", r.Topic, r.Err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, names...)
		cl.Close()
	})
	return names
}

// Client returns a plain franz-go client (for producing test input and reading output), closed at
// the end of the test.
func Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return Local().Client(t, opts...)
}

// Client returns a franz-go client on srv's brokers, closed at the end of the test.
func (srv Servers) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(srv.Kafka.Options(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Redis returns a client on the local server, closed at the end of the test.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// CassandraConfig returns a config for a fresh keyspace, dropped at the end of the test.
func CassandraConfig(t testing.TB) cass.Config {
	t.Helper()
	return Local().CassandraConfig(t)
}

// CassandraConfig returns a config for a fresh keyspace on srv's nodes, dropped at the end of the test.
func (srv Servers) CassandraConfig(t testing.TB) cass.Config {
	t.Helper()
	c := cass.Config{Hosts: srv.Cassandra, Port: 9042, LocalDC: "dc1", Keyspace: Name("test"), Timeout: 10 * time.Second}
	t.Cleanup(func() {
		cl := gocql.NewCluster(srv.Cassandra...)
		cl.Timeout = 30 * time.Second
		s, err := cl.CreateSession()
		if err != nil {
			return
		}
		defer s.Close()
		// With the generations a rebuild made (<keyspace>_g<N>).
		drop := []string{c.Keyspace}
		it := s.Query("SELECT keyspace_name FROM system_schema.keyspaces").Iter()
		for ks := ""; it.Scan(&ks); {
			if strings.HasPrefix(ks, c.Keyspace+"_g") {
				drop = append(drop, ks)
			}
		}
		_ = it.Close()
		for _, ks := range drop {
			_ = s.Query(fmt.Sprintf("DROP KEYSPACE IF EXISTS %s", ks)).Exec()
		}
	})
	return c
}

// GroupAtEnd commits, for a new consumer group, the current end offsets of topics, so a service
// started with that group processes only what is produced from now on (not what earlier tests left
// on the shared topics), without the race of an "latest" offset reset.
func GroupAtEnd(t testing.TB, group string, topics ...string) {
	t.Helper()
	Local().GroupAtEnd(t, group, topics...)
}

// GroupAtEnd is the package's GroupAtEnd on srv's brokers.
func (srv Servers) GroupAtEnd(t testing.TB, group string, topics ...string) {
	t.Helper()
	ctx := Context(t, 30*time.Second)
	adm := kadm.NewClient(srv.Client(t))
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	offs := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) { offs.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	resp, err := adm.CommitOffsets(ctx, group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit offsets for %s: %v", group, err)
	}
}

// CaughtUp reports whether group's committed offsets have reached the end of every partition of
// topics (everything produced so far was handled and acknowledged).
func CaughtUp(t testing.TB, group string, topics ...string) bool {
	t.Helper()
	return Local().CaughtUp(t, group, topics...)
}

// CaughtUp is the package's CaughtUp on srv's brokers.
func (srv Servers) CaughtUp(t testing.TB, group string, topics ...string) bool {
	t.Helper()
	ctx := Context(t, 10*time.Second)
	adm := kadm.NewClient(srv.Client(t))
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return false
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	ok := true
	ends.Each(func(o kadm.ListedOffset) {
		c, found := committed.Lookup(o.Topic, o.Partition)
		if o.Offset > 0 && (!found || c.At < o.Offset) {
			ok = false
		}
	})
	return ok
}

// Eventually polls cond every 20 ms until it holds, failing the test with what after d.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// EventuallyWhy is Eventually for a condition that says what it still misses ("" once met), every
// interval; the failure names the last miss.
func EventuallyWhy(t testing.TB, d, interval time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		miss := cond()
		if miss == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; still missing: %s", d, what, miss)
		}
		time.Sleep(interval)
	}
}

// Infra runs scripts/infra with args (e.g. "stop", "kafka") from the repository root.
func Infra(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(infraScript(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/infra %v: %v\n%s", args, err, out)
	}
}

func infraScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "infra")
}

// infraOutput runs scripts/infra with args and returns its standard output.
func infraOutput(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(infraScript(), args...).Output()
	if err != nil {
		t.Fatalf("scripts/infra %v: %v", args, err)
	}
	return string(out)
}

// OutboxEvents returns the events written to the outbox of the database behind q for record key
// key (an orderId), in commit order. Tests of a service's store read what it published this way.
func OutboxEvents(t testing.TB, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, key string) []event.Envelope {
	t.Helper()
	rows, err := q.Query(Context(t, 10*time.Second), `SELECT value FROM outbox WHERE record_key = $1 ORDER BY id`, key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (event.Envelope, error) {
		var v []byte
		if err := r.Scan(&v); err != nil {
			return event.Envelope{}, err
		}
		return event.Decode(v)
	})
	if err != nil {
		t.Fatalf("outbox of %s: %v", key, err)
	}
	return out
}
