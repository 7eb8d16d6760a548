package query

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/cass"
	dto "github.com/prometheus/client_model/go"

	"github.com/orderflow/orderflow/internal/testkit"
)

func newCassandra(t *testing.T) *Cassandra {
	t.Helper()
	testkit.Integration(t)
	return newCassandraKeyspace(t, testkit.CassandraConfig(t).Keyspace)
}

// newCassandraKeyspace connects to keyspace (created if needed) and migrates it.
func newCassandraKeyspace(t *testing.T, keyspace string) *Cassandra {
	t.Helper()
	testkit.Integration(t)
	ctx := testkit.Context(t, 2*time.Minute)
	cfg := testkit.CassandraConfig(t)
	cfg.Keyspace = keyspace
	first, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Close)
	c, err := Open(ctx, cfg) // idempotent: a second replica starting
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// newCassandraLayout1 is newCassandraKeyspace over a read model made before layouts were
// recorded: keyspace holding layout 1's tables and no generation row.
func newCassandraLayout1(t *testing.T, keyspace string) *Cassandra {
	t.Helper()
	testkit.Integration(t)
	ctx := testkit.Context(t, 2*time.Minute)
	cfg := testkit.CassandraConfig(t)
	cfg.Keyspace = keyspace
	s, err := cass.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := Migrate(ctx, s, layoutViewTables); err != nil {
		t.Fatal(err)
	}
	c := newCassandraKeyspace(t, cfg.Keyspace)
	if _, l, err := c.serving(ctx); err != nil || l != layoutViewTables {
		t.Fatalf("a keyspace with order_view opened in layout %d (%v), want %d", l, err, layoutViewTables)
	}
	return c
}

func TestCassandraStoreConverges(t *testing.T) {
	st := newCassandra(t)
	if _, l, err := st.serving(context.Background()); err != nil || l != currentLayout {
		t.Fatalf("a new keyspace opened in layout %d (%v), want %d", l, err, currentLayout)
	}
	contract(t, func() Store { return st }, false, 150)
}

// A read model still in layout 1 (until it is rebuilt) is read and written the same way.
func TestCassandraStoreConvergesInLayout1(t *testing.T) {
	testkit.Integration(t)
	st := newCassandraLayout1(t, testkit.CassandraConfig(t).Keyspace)
	contract(t, func() Store { return st }, false, 30)
}

// newBatcher runs a WriteCoalescer over a fresh Cassandra store for the test's lifetime.
func newBatcher(t *testing.T, maxCount, flushers int) *WriteCoalescer {
	t.Helper()
	b := NewWriteCoalescer(newCassandra(t), maxCount, flushers, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return b
}

func TestBatcherConverges(t *testing.T) {
	b := newBatcher(t, 8, 2)
	contract(t, func() Store { return b }, false, 50)
}

// Many orders projected at once share requests, and every one of them converges to its full row.
func TestBatcherCoalescesConcurrentOrders(t *testing.T) {
	b := newBatcher(t, 32, 1)
	ctx := testkit.Context(t, time.Minute)
	ref := saga(t, uuid.NewString())
	const orders = 60
	ids := make([]string, orders)
	var wg sync.WaitGroup
	for i := range ids {
		evs := withID(ref, uuid.NewString())
		ids[i] = evs[0].OrderID
		wg.Go(func() {
			if err := NewProjector(b, prometheus.NewRegistry()).Handle(ctx, evs); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		v, err := b.Get(ctx, id)
		if err != nil || v.Status != StatusDeliveryAssigned || v.TotalAmount == nil || v.DriverName == "" {
			t.Fatalf("order %s: %+v, %v", id, v, err)
		}
		if h, err := b.History(ctx, id); err != nil || len(h) != len(ref) {
			t.Fatalf("order %s: %d history rows, %v; want %d", id, len(h), err, len(ref))
		}
	}
	var m dto.Metric
	if err := b.sizes.Write(&m); err != nil {
		t.Fatal(err)
	}
	events, requests := m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
	t.Logf("%d events in %d requests", int(events), requests)
	if int(events) != orders*len(ref) || requests >= uint64(events) {
		t.Fatalf("%v events in %d requests: want %d events sharing requests", events, requests, orders*len(ref))
	}
}

// The standby flushers stay out of one write at a time and join a burst; every write lands.
func TestBatcherStandbyFlushersOnlyUnderLoad(t *testing.T) {
	b := newBatcher(t, 8, 4)
	ctx := testkit.Context(t, time.Minute)
	proj := NewProjector(b, prometheus.NewRegistry())
	for _, e := range withID(saga(t, uuid.NewString()), uuid.NewString()) {
		if err := proj.Handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.standbyWrites.Load(); n != 0 {
		t.Fatalf("standby flushers sent %d requests for writes made one at a time", n)
	}
	ref := saga(t, uuid.NewString())
	ids := make([]string, 40)
	var wg sync.WaitGroup
	for i := range ids {
		evs := withID(ref, uuid.NewString())
		ids[i] = evs[0].OrderID
		wg.Go(func() {
			if err := proj.Handle(ctx, evs); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if b.standbyWrites.Load() == 0 {
		t.Fatal("standby flushers never joined a burst of 40 orders")
	}
	for _, id := range ids {
		if v, err := b.Get(ctx, id); err != nil || v.Status != StatusDeliveryAssigned {
			t.Fatalf("order %s: %+v, %v", id, v, err)
		}
	}
}

// A write Cassandra refuses fails alone: the other writes of its batch still land.
func TestBatcherIsolatesARefusedWrite(t *testing.T) {
	b := newBatcher(t, 32, 1)
	ctx := testkit.Context(t, time.Minute)
	ref := withID(saga(t, uuid.NewString()), uuid.NewString())
	good, err := Fold(ref[0])
	if err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.OrderID = uuid.NewString()
	bad.History.OrderID = bad.OrderID
	bad.Writes = []Write{{Timestamp: 1, Values: map[string]any{"no_such_column": "x"}}}
	bad.Customer = nil
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = b.Apply(ctx, bad) })
	wg.Go(func() { errs[1] = b.Apply(ctx, good) })
	wg.Wait()
	if errs[0] == nil || IsUnavailable(errs[0]) {
		t.Fatalf("bad write: %v; want a request error", errs[0])
	}
	if errs[1] != nil {
		t.Fatalf("good write failed with its neighbour: %v", errs[1])
	}
	if v, err := b.Get(ctx, good.OrderID); err != nil || v.Status != StatusCreated {
		t.Fatalf("good order: %+v, %v", v, err)
	}
}
