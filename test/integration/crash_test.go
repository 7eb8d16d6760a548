package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/inbox"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestMain lets this test binary double as the consumer process that TestConsumerKilledMidBatch
// kills with SIGKILL: a real crash, not a simulated one.
func TestMain(m *testing.M) {
	if os.Getenv("ORDERFLOW_TEST_CHILD") == "consumer" {
		if err := runChildConsumer(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChildConsumer consumes ORDERFLOW_TEST_TOPIC and applies each event once per eventId through the inbox.
func runChildConsumer() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c := testkit.PGConfig()
	c.Database = os.Getenv("ORDERFLOW_TEST_DB")
	pool, err := pg.Open(ctx, c, inbox.Migrations())
	if err != nil {
		return err
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	ib := inbox.New("crash-test", reg)
	r, err := kafka.NewRunner(testkit.KafkaConfig(), kafka.RunnerConfig{
		Group: os.Getenv("ORDERFLOW_TEST_GROUP"), Topics: []string{os.Getenv("ORDERFLOW_TEST_TOPIC")},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: kafka.NewRunnerMetrics(reg),
		BatchSize: 20,
		Handler: func(ctx context.Context, es []event.Envelope) error {
			time.Sleep(2 * time.Millisecond) // slow enough that the kill lands mid-stream
			ids := make([]string, len(es))
			for i, e := range es {
				ids[i] = e.EventID
			}
			return pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error {
				var fresh []string
				b := &pgx.Batch{}
				ib.Record(b, ids, func(id string) { fresh = append(fresh, id) })
				if err := tx.Read(ctx, b); err != nil {
					return err
				}
				tx.Writes.Queue(`INSERT INTO effects (event_id) SELECT unnest($1::text[]::uuid[])`, fresh)
				return nil
			})
		},
	})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

func TestConsumerKilledMidBatchLosesNothingAndAppliesOnce(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 3*time.Minute)
	db := testkit.NewDatabase(t)
	topic := testkit.NewTopics(t, 3, "crash")[0]
	group := testkit.Name("crash")
	pool, err := pg.Open(ctx, db, inbox.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (id bigserial PRIMARY KEY, event_id uuid NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const n = 400
	prod := testkit.Client(t)
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		e, _ := event.Factory{Producer: "test"}.New(event.OrderCreated, fmt.Sprintf("order-%d", i%37), map[string]int{"i": i})
		v, _ := e.Encode()
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.OrderID), Value: v})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	count := func(q string) int {
		var c int
		_ = pool.QueryRow(ctx, q).Scan(&c)
		return c
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ORDERFLOW_TEST_CHILD=consumer", "ORDERFLOW_TEST_DB="+db.Database,
			"ORDERFLOW_TEST_TOPIC="+topic, "ORDERFLOW_TEST_GROUP="+group)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := start()
	testkit.Eventually(t, 60*time.Second, "a third processed", func() bool { return count(`SELECT count(*) FROM effects`) >= n/3 })
	_ = first.Process.Kill() // SIGKILL: no revoke, no final commit
	_ = first.Wait()
	killedAt := count(`SELECT count(*) FROM effects`)
	if killedAt >= n {
		t.Fatalf("child finished everything before the kill (%d)", killedAt)
	}

	second := start()
	defer func() { _ = second.Process.Signal(syscall.SIGTERM); _ = second.Wait() }()
	adm := kadm.NewClient(prod)
	testkit.Eventually(t, 90*time.Second, "every record committed", func() bool {
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return false
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum == n
	})
	if got := count(`SELECT count(*) FROM effects`); got != n {
		t.Fatalf("effects applied %d times for %d events", got, n)
	}
	if got := count(`SELECT count(DISTINCT event_id) FROM effects`); got != n {
		t.Fatalf("%d distinct events applied, want %d", got, n)
	}
	t.Logf("killed after %d effects; all %d applied exactly once after restart", killedAt, n)
}
