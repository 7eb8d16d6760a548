// Package disruptive holds tests that stop and restart the shared servers. They run after the
// other tests, one package at a time (make test), because they would disturb tests running in
// parallel. They are gated by ORDERFLOW_DISRUPTIVE=1.
package disruptive

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

func disruptive(t *testing.T) {
	t.Helper()
	testkit.Integration(t)
	if os.Getenv("ORDERFLOW_DISRUPTIVE") != "1" {
		t.Skip("stops shared servers: run by `make test` after the other tests (ORDERFLOW_DISRUPTIVE=1)")
	}
}

func TestOutboxPublishesRowsCommittedWhileKafkaIsDown(t *testing.T) {
	disruptive(t)
	ctx := testkit.Context(t, 4*time.Minute)
	db := testkit.NewDatabase(t)
	pool, err := pg.Open(ctx, db, outbox.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	prod := testkit.Client(t, kgo.ProducerLinger(0))
	relay := outbox.NewRelay(pool, prod, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(),
		outbox.RelayConfig{PollInterval: 200 * time.Millisecond, PublishTimeout: 2 * time.Second})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = relay.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	testkit.Infra(t, "stop", "kafka")
	t.Cleanup(func() { testkit.Infra(t, "start", "kafka") }) // never leave the shared broker down
	const n = 50
	keys := map[string]bool{}
	for i := 0; i < n; i++ {
		id := testkit.Name("down")
		keys[id] = true
		e, _ := event.Factory{Producer: "test"}.New(event.OrderCreated, id, event.OrderCreatedPayload{
			CustomerID: "outage-test", TotalAmount: event.MustMoney("1.00"), Currency: "EUR",
			Items: []event.Item{{ItemID: "TEST-UNKNOWN", Quantity: 1, UnitPrice: event.MustMoney("1.00")}}})
		if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, e) }); err != nil {
			t.Fatalf("commit while Kafka is down: %v", err)
		}
	}
	var pending int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&pending); err != nil || pending != n {
		t.Fatalf("pending %d (err %v), want %d while Kafka is down", pending, err, n)
	}
	testkit.Infra(t, "start", "kafka")

	cons := testkit.Client(t, kgo.ConsumeTopics(event.TopicOrders), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]bool{}
	for len(seen) < n {
		f := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d events published after Kafka returned", len(seen), n)
		}
		f.EachRecord(func(r *kgo.Record) {
			if keys[string(r.Key)] {
				seen[string(r.Key)] = true
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&pending)
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows still unsent", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
