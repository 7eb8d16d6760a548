package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/inbox"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

func TestRules(t *testing.T) {
	r := Rules{Speed: 1, EtaThreshold: time.Minute}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 500; i++ {
		id := uuid.NewString()
		eta := r.InitialETA(now, id)
		if d := eta.Sub(now); d < 30*time.Minute || d > 60*time.Minute || !eta.Equal(r.InitialETA(now, id)) {
			t.Fatalf("initial ETA %v after now (or not deterministic)", d)
		}
		next := r.NextETA(now.Add(10*time.Minute), eta, now, zoneOf(id), 7)
		if next.Before(now.Add(10*time.Minute)) || next.After(now.Add(MaxDelivery)) ||
			!next.Equal(r.NextETA(now.Add(10*time.Minute), eta, now, zoneOf(id), 7)) {
			t.Fatalf("next ETA %v before now, after the cap, or not deterministic", next)
		}
	}
	// Whatever the traffic, repeated recalculation ends by the cap.
	eta, at := now.Add(60*time.Minute), now
	for step := int64(0); eta.After(at); step++ {
		at = at.Add(5 * time.Minute)
		eta = r.NextETA(at, eta, now, "north", step)
	}
	if at.After(now.Add(MaxDelivery + 5*time.Minute)) {
		t.Fatalf("delivery ended only after %v", at.Sub(now))
	}
	if got := r.NextETA(now, now.Add(-time.Minute), now, "north", 1); !got.Equal(now) {
		t.Fatalf("a passed ETA must not move into the past: %v", got)
	}
	fast := Rules{Speed: 60}
	if d := fast.InitialETA(now, "x").Sub(now); d < 30*time.Second || d > 60*time.Second {
		t.Fatalf("at speed 60 a 30-60 minute delivery takes 30-60 s, got %v", d)
	}
	if r.Significant(now, now.Add(59*time.Second)) || !r.Significant(now, now.Add(-time.Minute)) {
		t.Fatal("threshold")
	}
	name, zone := driver(21)
	if name != "Ada Lovelace 2" || zone == "" {
		t.Fatalf("driver 21: %q %q", name, zone)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newStore(t *testing.T, drivers, capacity int, clk *clock) *store {
	t.Helper()
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	pool, err := pg.Open(ctx, testkit.NewDatabase(t), outbox.Migrations(), inbox.Migrations(), Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := &store{pool: pool, inbox: inbox.New(event.GroupDelivery, prometheus.NewRegistry()),
		factory: event.Factory{Producer: Name, Now: clk.now}, rules: Rules{Drivers: drivers, Capacity: capacity, Speed: 1, EtaThreshold: time.Minute}, now: clk.now}
	if err := s.seedDrivers(ctx, drivers); err != nil {
		t.Fatal(err)
	}
	return s
}

func authorized(t *testing.T, orderID string) event.Envelope {
	e, err := event.Factory{Producer: "payment-service"}.New(event.PaymentAuthorized, orderID, event.PaymentPayload{
		PaymentID: 1, OrderID: orderID, Amount: event.MustMoney("10.00"), Currency: "EUR", Status: event.PaymentStatusAuthorized})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (s *store) events(t *testing.T, orderID string) []event.Envelope {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT value FROM outbox WHERE record_key = $1 ORDER BY id`, orderID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []event.Envelope
	for rows.Next() {
		var v []byte
		_ = rows.Scan(&v)
		e, _ := event.Decode(v)
		out = append(out, e)
	}
	return out
}

func TestDuplicateAuthorizationsAssignOnce(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 3, 5, clk)
	ctx := testkit.Context(t, 30*time.Second)
	e := authorized(t, uuid.NewString())
	d, dup, err := s.assign(ctx, e)
	if err != nil || dup {
		t.Fatalf("assign: %v dup=%v", err, dup)
	}
	if _, dup, _ := s.assign(ctx, e); !dup {
		t.Fatal("same event assigned twice")
	}
	e2 := e
	e2.EventID = uuid.NewString()
	if _, dup, _ := s.assign(ctx, e2); !dup {
		t.Fatal("second authorization for the order assigned again")
	}
	// An operator removed the delivery row by hand: the redelivered event is still a duplicate and
	// takes no driver (the pick made for it is given back in the same transaction).
	before, _ := s.drivers(ctx)
	if _, err := s.pool.Exec(ctx, `DELETE FROM deliveries WHERE order_id = $1`, e.OrderID); err != nil {
		t.Fatal(err)
	}
	if _, dup, err := s.assign(ctx, e); err != nil || !dup {
		t.Fatalf("redelivery after the row was removed: dup=%v err=%v", dup, err)
	}
	if after, _ := s.drivers(ctx); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("drivers changed by a duplicate: %v → %v", before, after)
	}
	evs := s.events(t, e.OrderID)
	if len(evs) != 2 || evs[0].EventType != event.DeliveryAssigned || evs[1].EventType != event.ETAUpdated {
		t.Fatalf("events %v", evs)
	}
	p, _ := event.DecodePayload[event.DeliveryPayload](evs[1])
	if p.DeliveryID != d.DeliveryID || len(p.DeliveryID) != 16 || p.Status != StatusAssigned || !p.EstimatedDeliveryTime.Equal(d.ETA) ||
		evs[0].CausationID != e.EventID || evs[0].CorrelationID != e.CorrelationID {
		t.Fatalf("payload %+v envelope %+v", p, evs[0])
	}
}

func TestCapacityUnderConcurrencyAndWaitingOrder(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 20, 5, clk)
	ctx := testkit.Context(t, 2*time.Minute)
	var wg sync.WaitGroup
	var assigned atomic.Int32
	for i := 0; i < 100; i++ {
		wg.Go(func() {
			e := authorized(t, uuid.NewString())
			// As the consumer runner does, a momentary "no driver" (rows locked by concurrent
			// assignments that then filled them) is retried.
			for attempt := 0; ; attempt++ {
				_, _, err := s.assign(ctx, e)
				if err == nil {
					assigned.Add(1)
					return
				}
				if !errors.Is(err, ErrNoDriver) || attempt == 50 {
					t.Error(err)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if assigned.Load() != 100 {
		t.Fatalf("%d of 100 orders assigned", assigned.Load())
	}
	ds, _ := s.drivers(ctx)
	for _, d := range ds {
		if d.ActiveDeliveries != 5 {
			t.Fatalf("driver %d has %d active deliveries, want exactly 5", d.DriverID, d.ActiveDeliveries)
		}
	}
	late := authorized(t, uuid.NewString())
	if _, _, err := s.assign(ctx, late); !errors.Is(err, ErrNoDriver) {
		t.Fatalf("101st order: %v", err)
	}
	// Time passes in the simulation; deliveries complete and free their drivers.
	clk.advance(61 * time.Minute)
	res, err := s.tick(ctx, time.Second, 500)
	if err != nil || res.delivered != 100 {
		t.Fatalf("tick %+v %v", res, err)
	}
	if _, _, err := s.assign(ctx, late); err != nil {
		t.Fatalf("after capacity freed: %v", err)
	}
	if got, _ := s.get(ctx, late.OrderID); got.Status != StatusAssigned {
		t.Fatalf("late order %+v", got)
	}
}

func TestSchedulerUpdatesInOrderNeverAfterDelivery(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 5, 5, clk)
	ctx := testkit.Context(t, time.Minute)
	var orders []string
	for i := 0; i < 10; i++ {
		e := authorized(t, uuid.NewString())
		if _, _, err := s.assign(ctx, e); err != nil {
			t.Fatal(err)
		}
		orders = append(orders, e.OrderID)
	}
	const interval = 5 * time.Minute
	// Two schedulers run each slot at once; the due condition and SKIP LOCKED split the work.
	for step := 0; step < 20; step++ {
		clk.advance(interval)
		var wg sync.WaitGroup
		for k := 0; k < 2; k++ {
			wg.Go(func() {
				if _, err := s.tick(ctx, interval, 500); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	for _, id := range orders {
		evs := s.events(t, id)
		var last time.Time
		var lastETA time.Time
		completed := false
		for i, e := range evs {
			if e.OccurredAt.Before(last) {
				t.Fatalf("%s: events out of order", id)
			}
			last = e.OccurredAt
			p, _ := event.DecodePayload[event.DeliveryPayload](e)
			if completed {
				t.Fatalf("%s: %s after delivery.completed", id, e.EventType)
			}
			switch e.EventType {
			case event.DeliveryCompleted:
				completed = true
			case event.ETAUpdated:
				if i > 1 && p.EstimatedDeliveryTime.Equal(lastETA) {
					t.Fatalf("%s: eta.updated published twice for the same ETA", id)
				}
				if i > 1 && e.OccurredAt.Sub(evs[i-1].OccurredAt) < interval {
					t.Fatalf("%s: two updates within one interval (duplicate scheduler work)", id)
				}
				lastETA = p.EstimatedDeliveryTime
			}
		}
		if !completed {
			t.Fatalf("%s never delivered after 100 simulated minutes", id)
		}
	}
}

func TestBatchAssignsOnceAndFailsWhenFull(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 2, 2, clk)
	c := &consumer{store: s, metrics: newMetrics(prometheus.NewRegistry()), waiting: map[string]bool{}}
	ctx := testkit.Context(t, 30*time.Second)
	a, b := authorized(t, uuid.NewString()), authorized(t, uuid.NewString())
	failed, _ := event.Factory{Producer: "payment-service"}.New(event.PaymentFailed, uuid.NewString(), event.PaymentPayload{
		PaymentID: 2, OrderID: "x", Amount: event.MustMoney("1.00"), Currency: "EUR", Status: event.PaymentStatusFailed})
	if err := c.handle(ctx, []event.Envelope{a, failed, a, b}); err != nil {
		t.Fatal(err)
	}
	if len(s.events(t, a.OrderID)) != 2 || len(s.events(t, b.OrderID)) != 2 {
		t.Fatal("each order gets delivery.assigned and eta.updated once")
	}
	// Redelivered, and another authorization of an order already assigned (twice in one batch):
	// nothing new, and no driver counts a delivery that does not exist.
	a2, c1 := a, authorized(t, uuid.NewString())
	a2.EventID = uuid.NewString()
	c2 := c1
	c2.EventID = uuid.NewString()
	if err := c.handle(ctx, []event.Envelope{b, a2, c1, c2}); err != nil {
		t.Fatal(err)
	}
	if len(s.events(t, a.OrderID)) != 2 || len(s.events(t, b.OrderID)) != 2 || len(s.events(t, c1.OrderID)) != 2 {
		t.Fatal("a duplicate authorization assigned again")
	}
	ds, _ := s.drivers(ctx)
	if n, _ := s.activeCount(ctx); n != 3 || ds[0].ActiveDeliveries+ds[1].ActiveDeliveries != 3 {
		t.Fatalf("%d active deliveries, drivers %+v; want 3 of each", n, ds)
	}
	// Capacity 2×2 = 4: a batch of two more orders cannot both fit and fails as a whole.
	more := []event.Envelope{authorized(t, uuid.NewString()), authorized(t, uuid.NewString())}
	if err := c.handle(ctx, more); !errors.Is(err, ErrNoDriver) {
		t.Fatalf("full batch: %v", err)
	}
	if n, _ := s.activeCount(ctx); n != 3 {
		t.Fatalf("a failed batch left %d deliveries, want the 3 committed before", n)
	}
}

func TestSchedulerPassPeriod(t *testing.T) {
	for _, c := range []struct{ interval, want time.Duration }{
		{30 * time.Second, time.Second},                  // the default: a pass a second
		{10 * time.Second, time.Second},                  // the benchmark's interval
		{2 * time.Second, 200 * time.Millisecond},        // a tenth of short intervals
		{200 * time.Millisecond, 100 * time.Millisecond}, // never busier than ten passes a second
	} {
		if got := passEvery(c.interval); got != c.want {
			t.Errorf("passEvery(%v) = %v, want %v", c.interval, got, c.want)
		}
	}
}

// The assignment is caused by payment.authorized, so its NOTIFY (sent after its COMMIT) carries its
// events; the scheduler's writes are not caused by the order's previous event, so their NOTIFY
// carries none and the relay reads the table in id order (outbox.Timed): an assignment whose
// notification is late still goes out first.
func TestSchedulerAnnouncesThroughTheTable(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 2, 5, clk)
	ctx := testkit.Context(t, time.Minute)
	listener, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	if _, err := listener.Exec(ctx, "LISTEN "+outbox.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := listener.Conn().WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return n.Payload
	}

	e := authorized(t, uuid.NewString())
	if _, _, err := s.assign(ctx, e); err != nil {
		t.Fatal(err)
	}
	if p := next(); !strings.Contains(p, e.OrderID) || !strings.Contains(p, string(event.DeliveryAssigned)) {
		t.Fatalf("assignment's notification does not carry its events: %.200q", p)
	}
	clk.advance(24 * time.Hour) // past any ETA: the next pass completes the delivery
	res, err := s.tick(ctx, time.Minute, 500)
	if err != nil || res.delivered != 1 {
		t.Fatalf("tick: %+v, %v", res, err)
	}
	if p := next(); p != "" {
		t.Fatalf("scheduler's notification carries events (%.200q); it must make the relay read the table", p)
	}
	if evs := s.events(t, e.OrderID); len(evs) != 3 || evs[2].EventType != event.DeliveryCompleted {
		t.Fatalf("outbox rows of the order: %d, want assigned, eta.updated, completed", len(evs))
	}
}

// assign runs the handler's store path for one event, as the runner does for a single event.
func (s *store) assign(ctx context.Context, e event.Envelope) (Delivery, bool, error) {
	res, err := s.assignAll(ctx, []event.Envelope{e})
	if err != nil {
		return Delivery{}, false, err
	}
	return res[0].delivery, res[0].duplicate, nil
}
