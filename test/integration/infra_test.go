// Package integration holds smoke tests proving the real servers started by scripts/infra work with
// the drivers the services use, and with independent clients (kcat).
package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

func TestKafkaProduceConsumeAndKcatReadsIt(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 60*time.Second)
	topic := testkit.NewTopics(t, 1, "smoke")[0]
	key, value := uuid.NewString(), `{"hello":"`+uuid.NewString()+`"}`

	prod := testkit.Client(t)
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	cons := testkit.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fetches := cons.PollRecords(ctx, 1)
	if err := fetches.Err(); err != nil {
		t.Fatalf("poll: %v", err)
	}
	recs := fetches.Records()
	if len(recs) != 1 || string(recs[0].Key) != key || string(recs[0].Value) != value {
		t.Fatalf("consumed %v", recs)
	}

	// An independent client (librdkafka via kcat) reads what franz-go wrote.
	out, err := exec.CommandContext(ctx, "kcat", "-b", "127.0.0.1:9092", "-C", "-t", topic, "-o", "beginning",
		"-c", "1", "-e", "-f", "%k|%s").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != key+"|"+value {
		t.Fatalf("kcat read %q, want %q", got, key+"|"+value)
	}
}

func TestCassandraKeyspaceRoundTripInDC1(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 90*time.Second)
	c := testkit.CassandraConfig(t)
	s, err := cass.Connect(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var dc string
	if err := s.Query("SELECT data_center FROM system.local").ScanContext(ctx, &dc); err != nil || dc != "dc1" {
		t.Fatalf("data center %q, err %v", dc, err)
	}
	if err := s.Query("CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v text)").ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	want := uuid.NewString()
	if err := s.Query("INSERT INTO kv (k, v) VALUES (?, ?)", "a", want).ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := s.Query("SELECT v FROM kv WHERE k = ?", "a").ScanContext(ctx, &got); err != nil || got != want {
		t.Fatalf("read %q, err %v", got, err)
	}
}

func TestPostgresTransactionOnEveryServiceDatabase(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 60*time.Second)
	for _, db := range []string{"order_db", "inventory_db", "delivery_eta", "delivery_db"} {
		c := testkit.PGConfig()
		c.Database = db
		if err := pg.EnsureDatabase(ctx, c); err != nil {
			t.Fatalf("%s: %v", db, err)
		}
		conn, err := pgx.Connect(ctx, c.URL(db))
		if err != nil {
			t.Fatalf("%s: %v", db, err)
		}
		var n int
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "CREATE TEMP TABLE smoke (n int) ON COMMIT DROP"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO smoke VALUES ($1), ($2)", 1, 2); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT sum(n) FROM smoke").Scan(&n)
		})
		conn.Close(context.Background())
		if err != nil || n != 3 {
			t.Fatalf("%s: sum %d, err %v", db, n, err)
		}
	}
}

func TestRedisSetGetWithExpiry(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	r := testkit.Redis(t)
	key := "smoke:" + uuid.NewString()
	if err := r.Set(ctx, key, "v", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Get(ctx, key).Result(); err != nil || v != "v" {
		t.Fatalf("get %q %v", v, err)
	}
	if ttl := r.PTTL(ctx, key).Val(); ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("ttl %v", ttl)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Exists(ctx, key).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("key did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
