package outbox_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

// produceWrites counts produce requests the client wrote to a broker.
type produceWrites struct{ n atomic.Int32 }

func (p *produceWrites) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == int16(kmsg.Produce) && err == nil {
		p.n.Add(1)
	}
}

// The relay hands Kafka the next events while an earlier produce request is still unanswered, marks
// only what was acknowledged, and keeps commit order. A real broker cannot be told to hold one answer,
// so Kafka is franz-go's in-process fake here (Postgres is real).
func TestRelayPipelinesPublishing(t *testing.T) {
	testkit.Integration(t)
	pool := openDB(t)
	ctx := testkit.Context(t, 60*time.Second)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, event.TopicOrders))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var answered atomic.Int32
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) }) // never leave the fake's goroutine asleep
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if answered.Add(1) == 2 { // the first answer lets franz-go pipeline this partition; hold the second
			cluster.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	writes := &produceWrites{}
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ProducerLinger(0), kgo.WithHooks(writes))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	relay := outbox.NewRelay(pool, prod, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(),
		outbox.RelayConfig{PollInterval: time.Minute, LeaderRetry: 200 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = relay.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	id := testkit.Name("pipelined")
	commit := func(seq int) {
		t.Helper()
		e := envelope(t, id, seq)
		if err := pg.InTx(ctx, pool, func(tx pgx.Tx) error { return outbox.Add(ctx, tx, e) }); err != nil {
			t.Fatal(err)
		}
	}
	commit(0)
	testkit.Eventually(t, 20*time.Second, "first event published and marked", func() bool { return unsent(t, pool) == 0 })
	commit(1)
	testkit.Eventually(t, 10*time.Second, "second produce request at the broker", func() bool { return answered.Load() >= 2 })
	commit(2)
	testkit.Eventually(t, 10*time.Second, "third event sent while the second is unanswered", func() bool { return writes.n.Load() >= 3 })
	if n := unsent(t, pool); n != 2 {
		t.Fatalf("%d rows unsent while their acknowledgements are outstanding, want 2", n)
	}

	releaseOnce.Do(func() { close(release) })
	testkit.Eventually(t, 20*time.Second, "all events marked after the broker answered", func() bool { return unsent(t, pool) == 0 })
	cons, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(event.TopicOrders),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var recs []*kgo.Record
	for len(recs) < 3 && ctx.Err() == nil {
		recs = append(recs, cons.PollFetches(ctx).Records()...)
	}
	if got := seqs(recs)[id]; !slices.Equal(got, []int{0, 1, 2}) || len(recs) != 3 {
		t.Fatalf("order %v in %d records, want 0, 1, 2 once each", got, len(recs))
	}
}
