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
	"github.com/prometheus/client_golang/prometheus/testutil"

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
	return testkit.OutboxEvents(t, s.pool, orderID)
}

func TestDuplicateAuthorizationsAssignOnce(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 3, 5, clk)
	ctx := testkit.Context(t, 30*time.Second)
	e := authorized(t, uuid.NewString())
	d, dup, _, err := s.assign(ctx, e)
	if err != nil || dup {
		t.Fatalf("assign: %v dup=%v", err, dup)
	}
	if _, dup, _, _ := s.assign(ctx, e); !dup {
		t.Fatal("same event assigned twice")
	}
	e2 := e
	e2.EventID = uuid.NewString()
	if _, dup, _, _ := s.assign(ctx, e2); !dup {
		t.Fatal("second authorization for the order assigned again")
	}
	// An operator removed the delivery row by hand: the redelivered event is still a duplicate and
	// takes no driver (the pick made for it is given back in the same transaction).
	before, _ := s.drivers(ctx)
	if _, err := s.pool.Exec(ctx, `DELETE FROM deliveries WHERE order_id = $1`, e.OrderID); err != nil {
		t.Fatal(err)
	}
	if _, dup, _, err := s.assign(ctx, e); err != nil || !dup {
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

// TestCapacityUnderConcurrencyAndTheQueue: 100 concurrent single assignments fill 20 drivers of
// capacity 5 exactly (none waits: a single event waits for drivers others hold locked); later
// orders queue, first come first served, and newer ones go behind them even when a driver frees up;
// completions hand the freed drivers to the queue in order.
func TestCapacityUnderConcurrencyAndTheQueue(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 20, 5, clk)
	ctx := testkit.Context(t, 2*time.Minute)
	var wg sync.WaitGroup
	var assigned atomic.Int32
	for i := 0; i < 100; i++ {
		wg.Go(func() {
			d, _, waiting, err := s.assign(ctx, authorized(t, uuid.NewString()))
			switch {
			case err != nil:
				t.Error(err)
			case waiting:
				t.Error("an order was queued while capacity was left")
			case d.DriverID != 0:
				assigned.Add(1)
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
	// Full: three more orders queue, in arrival order, and the consumer goes on.
	var late []event.Envelope
	for i := range 3 {
		e := authorized(t, uuid.NewString())
		clk.advance(time.Millisecond * time.Duration(i+1))
		if _, _, waiting, err := s.assign(ctx, e); err != nil || !waiting {
			t.Fatalf("order %d after capacity: waiting=%v err=%v", 101+i, waiting, err)
		}
		late = append(late, e)
	}
	if evs := s.events(t, late[0].OrderID); len(evs) != 1 || evs[0].EventType != event.DeliveryWaiting || evs[0].CausationID != late[0].EventID {
		t.Fatalf("queued order's events: %v", evs)
	}
	if n, _ := s.waitingCount(ctx); n != 3 {
		t.Fatalf("queue holds %d, want 3", n)
	}
	// A driver frees up (one of its deliveries removed by hand): a newer order still goes behind
	// the queue, and the queue pass gives the driver to the oldest.
	if _, err := s.pool.Exec(ctx, `WITH gone AS (DELETE FROM deliveries WHERE delivery_id =
			(SELECT delivery_id FROM deliveries WHERE driver_id = 1 LIMIT 1) RETURNING driver_id)
		UPDATE drivers SET active_deliveries = active_deliveries - 1 WHERE driver_id IN (SELECT driver_id FROM gone)`); err != nil {
		t.Fatal(err)
	}
	newer := authorized(t, uuid.NewString())
	if _, _, waiting, err := s.assign(ctx, newer); err != nil || !waiting {
		t.Fatalf("a new order overtook the queue: waiting=%v err=%v", waiting, err)
	}
	if n, err := s.assignWaiting(ctx, 500); err != nil || n != 1 {
		t.Fatalf("queue pass assigned %d (%v), want 1", n, err)
	}
	if got, err := s.get(ctx, late[0].OrderID); err != nil || got.Status != StatusAssigned {
		t.Fatalf("oldest waiting order: %+v %v", got, err)
	}
	evs := s.events(t, late[0].OrderID)
	if len(evs) != 3 || evs[1].EventType != event.DeliveryAssigned || evs[1].CausationID != late[0].EventID ||
		evs[1].CorrelationID != late[0].CorrelationID {
		t.Fatalf("events of the oldest waiting order: %v", evs)
	}
	// Time passes in the simulation; deliveries complete, free their drivers, and the queue empties.
	clk.advance(61 * time.Minute)
	if res, err := s.tick(ctx, time.Second, 500); err != nil || res.delivered != 100 {
		t.Fatalf("tick %+v %v", res, err)
	}
	if n, err := s.assignWaiting(ctx, 500); err != nil || n != 3 {
		t.Fatalf("queue pass after completions assigned %d (%v), want 3", n, err)
	}
	for _, e := range append(late[1:], newer) {
		if got, _ := s.get(ctx, e.OrderID); got.Status != StatusAssigned {
			t.Fatalf("waiting order %s: %+v", e.OrderID, got)
		}
	}
	if n, _ := s.waitingCount(ctx); n != 0 {
		t.Fatalf("queue holds %d after the pass, want 0", n)
	}
	// An order of the queue assigned by other means (an older replica knows no queue) leaves the
	// queue at the next pass instead of holding up the orders behind it.
	if _, err := s.pool.Exec(ctx, `UPDATE drivers SET active_deliveries = 5`); err != nil { // full again
		t.Fatal(err)
	}
	stuck, behind := authorized(t, uuid.NewString()), authorized(t, uuid.NewString())
	for _, e := range []event.Envelope{stuck, behind} {
		if _, _, waiting, err := s.assign(ctx, e); err != nil || !waiting {
			t.Fatalf("queueing %s: waiting=%v err=%v", e.OrderID, waiting, err)
		}
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO deliveries (delivery_id, order_id, driver_id, zone, status, eta, assigned_at, eta_checked_at)
		VALUES ('DEL-elsewhere', $1, 2, 'north', 'DELIVERED', now(), now(), now())`, stuck.OrderID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE drivers SET active_deliveries = 4 WHERE driver_id = 1`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.assignWaiting(ctx, 1); err != nil || n != 1 {
		t.Fatalf("queue pass behind an order assigned elsewhere: assigned %d (%v), want 1", n, err)
	}
	if got, _ := s.get(ctx, behind.OrderID); got.Status != StatusAssigned {
		t.Fatalf("order behind it: %+v", got)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE drivers SET active_deliveries = 0`); err != nil {
		t.Fatal(err)
	}
	// A redelivered authorization of an order that waited is a duplicate.
	if _, dup, _, err := s.assign(ctx, late[1]); err != nil || !dup {
		t.Fatalf("redelivery of a served order: dup=%v err=%v", dup, err)
	}
}

func TestSchedulerUpdatesInOrderNeverAfterDelivery(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 5, 5, clk)
	ctx := testkit.Context(t, time.Minute)
	var orders []string
	for i := 0; i < 10; i++ {
		e := authorized(t, uuid.NewString())
		if _, _, _, err := s.assign(ctx, e); err != nil {
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
	c := &consumer{store: s, metrics: newMetrics(prometheus.NewRegistry())}
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
	// Capacity 2×2 = 4: of a batch of two more orders the first takes the last slot and the second
	// waits in the queue; the batch succeeds and the partition moves on.
	more := []event.Envelope{authorized(t, uuid.NewString()), authorized(t, uuid.NewString())}
	if err := c.handle(ctx, more); err != nil {
		t.Fatalf("batch beyond capacity: %v", err)
	}
	if n, _ := s.activeCount(ctx); n != 4 {
		t.Fatalf("%d active deliveries, want 4", n)
	}
	if w, _ := s.waitingCount(ctx); w != 1 || testutil.ToFloat64(c.metrics.queued) != 1 {
		t.Fatalf("queue holds %d (queued counter %v), want 1", w, testutil.ToFloat64(c.metrics.queued))
	}
	if got, err := s.get(ctx, more[0].OrderID); err != nil || got.Status != StatusAssigned {
		t.Fatalf("first of the batch: %+v %v", got, err)
	}
}

// TestBatchFindingDriversLockedIsSplit: room that a concurrent assignment holds locked fails a
// batch (the runner splits it), while a single event waits for the lock and takes the room.
func TestBatchFindingDriversLockedIsSplit(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := newStore(t, 1, 2, clk)
	c := &consumer{store: s, metrics: newMetrics(prometheus.NewRegistry())}
	ctx := testkit.Context(t, 30*time.Second)
	lock, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT 1 FROM drivers WHERE driver_id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	batch := []event.Envelope{authorized(t, uuid.NewString()), authorized(t, uuid.NewString())}
	if err := c.handle(ctx, batch); !errors.Is(err, errDriversBusy) {
		t.Fatalf("batch while the only driver is locked: %v, want errDriversBusy", err)
	}
	var released atomic.Bool
	go func() {
		time.Sleep(200 * time.Millisecond) // the concurrent assignment ends
		released.Store(true)
		_ = lock.Rollback(context.Background())
	}()
	if err := c.handle(ctx, batch[:1]); err != nil {
		t.Fatal(err)
	}
	if !released.Load() {
		t.Fatal("the single event was assigned while the driver was still locked")
	}
	if got, err := s.get(ctx, batch[0].OrderID); err != nil || got.Status != StatusAssigned {
		t.Fatalf("single event after the lock: %+v %v", got, err)
	}
	if w, _ := s.waitingCount(ctx); w != 0 {
		t.Fatalf("%d queued while there was room", w)
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
	if _, _, _, err := s.assign(ctx, e); err != nil {
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
func (s *store) assign(ctx context.Context, e event.Envelope) (d Delivery, duplicate, waiting bool, err error) {
	res, err := s.assignAll(ctx, []event.Envelope{e})
	if err != nil {
		return Delivery{}, false, false, err
	}
	return res[0].delivery, res[0].duplicate, res[0].waiting, nil
}
