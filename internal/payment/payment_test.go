package payment

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/redislock"
	"github.com/orderflow/orderflow/internal/testkit"
)

func TestGatewayRules(t *testing.T) {
	g := Gateway{AmountLimit: event.MustMoney("5000.00"), DeclineCustomers: []string{"bad-cust"}}
	cases := []struct {
		name, order, customer, amount, want string
	}{
		{"under limit", "o1", "c", "4999.99", ""},
		{"at limit", "o1", "c", "5000.00", ""},
		{"over limit", "o1", "c", "5000.01", ReasonAmountLimit},
		{"decline list", "o1", "bad-cust", "1.00", ReasonCustomer},
		{"limit wins over list", "o1", "bad-cust", "9000.00", ReasonAmountLimit},
	}
	for _, c := range cases {
		got, err := g.Decide(context.Background(), c.order, c.customer, event.MustMoney(c.amount))
		if err != nil || got != c.want {
			t.Errorf("%s: got %q %v, want %q", c.name, got, err, c.want)
		}
	}
	// Hash rate: deterministic per orderId and close to the configured share.
	g = Gateway{AmountLimit: event.MustMoney("5000.00"), DeclineRate: 0.2}
	declined := 0
	for i := 0; i < 5000; i++ {
		id := uuid.NewSHA1(uuid.NameSpaceOID, []byte{byte(i), byte(i >> 8)}).String()
		a, _ := g.Decide(context.Background(), id, "c", event.MustMoney("1"))
		b, _ := g.Decide(context.Background(), id, "c", event.MustMoney("1"))
		if a != b {
			t.Fatalf("order %s decided differently on replay", id)
		}
		if a == ReasonDeclineRate {
			declined++
		}
	}
	if declined < 850 || declined > 1150 {
		t.Fatalf("declined %d of 5000 at 20%%", declined)
	}
}

type fixture struct {
	pool *pgxpool.Pool
	rdb  *redis.Client
	ns   string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	testkit.Integration(t)
	pool, err := pg.Open(testkit.Context(t, 30*time.Second), testkit.NewDatabase(t), outbox.Migrations(), Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return fixture{pool: pool, rdb: testkit.Redis(t), ns: testkit.Name("pay")}
}

// instance is one payment-service replica's processor (its own metrics) on the shared stores.
func (f fixture) instance(t *testing.T, rdb *redis.Client, wait time.Duration) (*processor, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return &processor{
		pool:    f.pool,
		locker:  &redislock.Locker{Client: rdb, Prefix: f.ns + ":lock:", TTL: 30 * time.Second, Wait: wait},
		dedup:   &redislock.Dedup{Client: rdb, Prefix: f.ns + ":dedup:", TTL: time.Hour},
		gateway: Gateway{AmountLimit: event.MustMoney("5000.00")}, factory: event.Factory{Producer: Name},
		metrics: newMetrics(reg), log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now,
	}, reg
}

func reservedEvent(t *testing.T, amount string) event.Envelope {
	e, err := event.Factory{Producer: "inventory-service"}.New(event.InventoryReserved, uuid.NewString(), event.InventoryPayload{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ = event.Factory{Producer: "inventory-service"}.New(event.InventoryReserved, e.OrderID, event.InventoryPayload{
		OrderID: e.OrderID, Amount: event.MustMoney(amount), Currency: "EUR", CustomerID: "cust", ReservationID: uuid.NewString()})
	return e
}

func (f fixture) counts(t *testing.T, orderID string) (payments, events int) {
	ctx := context.Background()
	_ = f.pool.QueryRow(ctx, `SELECT count(*) FROM payments WHERE order_id = $1`, orderID).Scan(&payments)
	_ = f.pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE record_key = $1`, orderID).Scan(&events)
	return
}

func sum(m *metrics, pick func(*metrics) prometheus.Counter) float64 {
	return testutil.ToFloat64(pick(m))
}

func TestSameEventTenTimes(t *testing.T) {
	f := newFixture(t)
	for _, mode := range []string{"sequential", "4 goroutines", "2 instances"} {
		t.Run(mode, func(t *testing.T) {
			ctx := testkit.Context(t, 60*time.Second)
			a, _ := f.instance(t, f.rdb, 5*time.Second)
			b, _ := f.instance(t, f.rdb, 5*time.Second)
			e := reservedEvent(t, "42.00")
			var wg sync.WaitGroup
			run := func(p *processor, n int) {
				for i := 0; i < n; i++ {
					if err := p.handle(ctx, []event.Envelope{e}); err != nil {
						t.Error(err)
					}
				}
			}
			switch mode {
			case "sequential":
				run(a, 10)
			case "4 goroutines":
				for _, n := range []int{3, 3, 2, 2} {
					wg.Go(func() { run(a, n) })
				}
			case "2 instances":
				wg.Go(func() { run(a, 5) })
				wg.Go(func() { run(b, 5) })
			}
			wg.Wait()
			pays, evs := f.counts(t, e.OrderID)
			dup := sum(a.metrics, func(m *metrics) prometheus.Counter { return m.duplicate }) + sum(b.metrics, func(m *metrics) prometheus.Counter { return m.duplicate })
			hits := sum(a.metrics, func(m *metrics) prometheus.Counter { return m.redisHit }) + sum(b.metrics, func(m *metrics) prometheus.Counter { return m.redisHit }) +
				sum(a.metrics, func(m *metrics) prometheus.Counter { return m.dbHit }) + sum(b.metrics, func(m *metrics) prometheus.Counter { return m.dbHit })
			processed := sum(a.metrics, func(m *metrics) prometheus.Counter { return m.processed }) + sum(b.metrics, func(m *metrics) prometheus.Counter { return m.processed })
			if pays != 1 || evs != 1 || dup != 9 || hits != 9 || processed != 1 {
				t.Fatalf("payments %d events %d duplicates %v hits %v processed %v", pays, evs, dup, hits, processed)
			}
		})
	}
}

func TestSecondEventForSameOrderIsADuplicate(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, 30*time.Second)
	p, _ := f.instance(t, f.rdb, 5*time.Second)
	e := reservedEvent(t, "10.00")
	if err := p.handle(ctx, []event.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	e.EventID = uuid.NewString() // a different inventory.reserved for the same order
	if err := p.handle(ctx, []event.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	if pays, evs := f.counts(t, e.OrderID); pays != 1 || evs != 1 || testutil.ToFloat64(p.metrics.dbHit) != 1 {
		t.Fatalf("payments %d events %d dbHit %v", pays, evs, testutil.ToFloat64(p.metrics.dbHit))
	}
}

func TestDeclineIsRecordedAndPublished(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, 30*time.Second)
	p, _ := f.instance(t, f.rdb, 5*time.Second)
	e := reservedEvent(t, "6000.00")
	if err := p.handle(ctx, []event.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	pay, err := p.get(ctx, e.OrderID)
	if err != nil || pay.Status != event.PaymentStatusFailed || pay.FailureReason == nil || *pay.FailureReason != ReasonAmountLimit {
		t.Fatalf("payment %+v %v", pay, err)
	}
	var v []byte
	_ = f.pool.QueryRow(ctx, `SELECT value FROM outbox WHERE record_key = $1`, e.OrderID).Scan(&v)
	out, _ := event.Decode(v)
	pl, err := event.DecodePayload[event.PaymentPayload](out)
	if out.EventType != event.PaymentFailed || err != nil || pl.PaymentID != pay.PaymentID || *pl.FailureReason != ReasonAmountLimit ||
		out.CausationID != e.EventID || testutil.ToFloat64(p.metrics.failed) != 1 {
		t.Fatalf("event %+v payload %+v %v", out, pl, err)
	}
	if _, err := p.get(ctx, "unknown-order"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown order: %v", err)
	}
}

func TestLockHeldByAnotherOwnerTimesOutThenSucceeds(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, 30*time.Second)
	p, _ := f.instance(t, f.rdb, 100*time.Millisecond)
	e := reservedEvent(t, "10.00")
	other := &redislock.Locker{Client: f.rdb, Prefix: f.ns + ":lock:", TTL: time.Minute, Wait: time.Second}
	held, err := other.Acquire(ctx, e.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	// Retried like an outage (no attempt limit), so contention never sends the event to the DLQ.
	if err := p.handle(ctx, []event.Envelope{e}); !errors.Is(err, errLockTimeout) || !kafka.IsUnavailable(err) {
		t.Fatalf("handle while locked: %v, want errLockTimeout marked unavailable", err)
	}
	if testutil.ToFloat64(p.metrics.lockTimeout) != 1 {
		t.Fatal("lock timeout not counted")
	}
	if pays, _ := f.counts(t, e.OrderID); pays != 0 {
		t.Fatal("charged without the lock")
	}
	if ok, _ := held.Release(ctx); !ok {
		t.Fatal("owner could not release")
	}
	if err := p.handle(ctx, []event.Envelope{e}); err != nil { // the runner's retry
		t.Fatal(err)
	}
	if pays, evs := f.counts(t, e.OrderID); pays != 1 || evs != 1 {
		t.Fatalf("after retry: payments %d events %d", pays, evs)
	}
}

// TestCrashBetweenCommitAndRedisMark: the commit happened, the Redis mark did not (process died).
// The redelivered event misses Redis and is stopped by the database constraint.
func TestCrashBetweenCommitAndRedisMark(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, 30*time.Second)
	p, _ := f.instance(t, f.rdb, 5*time.Second)
	e := reservedEvent(t, "10.00")
	pl, _ := event.DecodePayload[event.InventoryPayload](e)
	c := &charge{e: e, pl: pl}
	if err := p.record(ctx, []*charge{c}); err != nil || c.dup {
		t.Fatalf("record: dup=%v err=%v", c.dup, err)
	}
	if err := p.handle(ctx, []event.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	if pays, evs := f.counts(t, e.OrderID); pays != 1 || evs != 1 {
		t.Fatalf("payments %d events %d", pays, evs)
	}
	if testutil.ToFloat64(p.metrics.dbHit) != 1 || testutil.ToFloat64(p.metrics.redisHit) != 0 {
		t.Fatal("the redelivery was not caught by layer 3")
	}
	if err := p.handle(ctx, []event.Envelope{e}); err != nil || testutil.ToFloat64(p.metrics.redisHit) != 1 {
		t.Fatal("after layer 3 the event is marked in Redis")
	}
}

func TestRedisDownFallsBackToDatabase(t *testing.T) {
	f := newFixture(t)
	ctx := testkit.Context(t, 30*time.Second)
	down := redislock.NewClient(redislock.Config{Addr: "127.0.0.1:1"})
	defer func() { _ = down.Close() }()
	p, _ := f.instance(t, down, 100*time.Millisecond)
	e := reservedEvent(t, "10.00")
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Go(func() {
			if err := p.handle(ctx, []event.Envelope{e}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if pays, evs := f.counts(t, e.OrderID); pays != 1 || evs != 1 || testutil.ToFloat64(p.metrics.dbHit) != 4 {
		t.Fatalf("payments %d events %d dbHit %v", pays, evs, testutil.ToFloat64(p.metrics.dbHit))
	}
}

func TestMetricNamesAndTypes(t *testing.T) {
	reg, gatherer := obs.NewRegistry(Name)
	newMetrics(reg)
	w := httptest.NewRecorder()
	promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for name, typ := range map[string]string{
		"payment_processed_total": "counter", "payment_failed_total": "counter", "payment_duplicate_total": "counter",
		"payment_dedup_redis_hit_total": "counter", "payment_dedup_db_hit_total": "counter",
		"payment_lock_timeout_total": "counter", "payment_processing_duration_seconds": "histogram",
	} {
		if !strings.Contains(body, "# TYPE "+name+" "+typ) {
			t.Errorf("missing %s %s", typ, name)
		}
	}
	if !strings.Contains(body, `payment_processed_total{application="payment-service"} 0`) {
		t.Error("application label missing")
	}
}
