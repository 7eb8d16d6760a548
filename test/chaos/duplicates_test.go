package chaos

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/test/harness"
)

// TestDuplicateStorm (9): a 30 s slice of every domain topic is republished twice under load, so
// every event of those orders arrives three times, the copies late (after newer events of the same
// order). Every consumer must recognise them: one reservation, one payment, one delivery per order.
func TestDuplicateStorm(t *testing.T) {
	chaos(t, false)
	sys := testkit.StartSystem(t, false, env...)
	ctx := testkit.Context(t, 10*time.Minute)
	result := load(t, sys, 30, 60*time.Second)
	adm := kadm.NewClient(testkit.Client(t))
	wait(ctx, 5*time.Second)
	from, err := adm.ListEndOffsets(ctx, event.MainTopics()...)
	if err != nil {
		t.Fatal(err)
	}
	wait(ctx, 30*time.Second)
	to, err := adm.ListEndOffsets(ctx, event.MainTopics()...)
	if err != nil {
		t.Fatal(err)
	}
	slice := readSlice(ctx, t, sys, from, to)
	dupsBefore := metric(t, sys, "PAYMENT", "payment_duplicate_total")
	began := time.Now()
	prod := testkit.Client(t)
	for pass := 0; pass < 2; pass++ {
		var out []*kgo.Record
		for _, r := range slice {
			out = append(out, &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers})
		}
		if err := prod.ProduceSync(ctx, out...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	storm := time.Since(began)
	res, r, rep := afterFault(t, sys, result)
	dups := metric(t, sys, "PAYMENT", "payment_duplicate_total") - dupsBefore
	if dups == 0 {
		t.Errorf("payment-service recognised no duplicate out of %d republished records", 2*len(slice))
	}
	record(row{"9 duplicate storm", sent(res), fmt.Sprintf("30 s slice (%d records) republished twice in %s", len(slice), secs(storm)),
		secs(r), invariants(rep), fmt.Sprintf("empty; payment recognised %v duplicates", dups)})
}

// readSlice reads [from, to) of every partition and keeps the records of this system's orders
// (another system sharing the topics must not be disturbed).
func readSlice(ctx context.Context, t *testing.T, sys *testkit.System, from, to kadm.ListedOffsets) []*kgo.Record {
	t.Helper()
	parts := map[string]map[int32]kgo.Offset{}
	want := 0
	from.Each(func(o kadm.ListedOffset) {
		end, _ := to.Lookup(o.Topic, o.Partition)
		if end.Offset > o.Offset {
			if parts[o.Topic] == nil {
				parts[o.Topic] = map[int32]kgo.Offset{}
			}
			parts[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
			want += int(end.Offset - o.Offset)
		}
	})
	cl := testkit.Client(t, kgo.ConsumePartitions(parts))
	var all []*kgo.Record
	var mu sync.Mutex
	for len(all) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if end, _ := to.Lookup(r.Topic, r.Partition); r.Offset < end.Offset {
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
			}
		})
	}
	pool, err := pg.Open(ctx, sys.DBs["ORDER"])
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ids := map[string]bool{}
	rows, err := pool.Query(ctx, `SELECT order_id::text FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	var own []*kgo.Record
	for _, r := range all {
		if ids[string(r.Key)] {
			own = append(own, r)
		}
	}
	t.Logf("slice: %d records, %d of this system's orders", len(all), len(own))
	return own
}

// TestIdempotencyBurst (11): 50 concurrent POSTs with one Idempotency-Key under load create one
// order and one event; every response names that order; a different body with the key is refused.
func TestIdempotencyBurst(t *testing.T) {
	chaos(t, true)
	sys := testkit.StartSystem(t, false, env...)
	ctx := testkit.Context(t, 10*time.Minute)
	result := load(t, sys, 30, 20*time.Second)
	wait(ctx, 5*time.Second)
	key := fmt.Sprintf("burst-%d", time.Now().UnixNano())
	body := `{"customerId":"burst","currency":"EUR","items":[{"itemId":"SKU-002","quantity":2,"unitPrice":"3.50"}]}`
	type answer struct {
		id     string
		status int
		err    error
	}
	answers := make(chan answer, 50)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			<-start
			id, status, err := post(ctx, sys, key, body)
			answers <- answer{id, status, err}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	burst := time.Since(began)
	close(answers)
	ids, statuses := map[string]int{}, map[int]int{}
	for a := range answers {
		if a.err != nil {
			t.Errorf("POST: %v", a.err)
		}
		ids[a.id]++
		statuses[a.status]++
	}
	if len(ids) != 1 || statuses[http.StatusCreated] != 1 || statuses[http.StatusOK] != 49 {
		t.Errorf("burst answered orders %v with statuses %v; want one order, one 201 and 49 replays (200)", ids, statuses)
	}
	var id string
	for k := range ids {
		id = k
	}
	if _, status, _ := post(ctx, sys, key, `{"customerId":"burst","currency":"EUR","items":[{"itemId":"SKU-002","quantity":3,"unitPrice":"3.50"}]}`); status != http.StatusUnprocessableEntity {
		t.Errorf("a different body with the same key answered %d, want 422", status)
	}
	pool, err := pg.Open(ctx, sys.DBs["ORDER"])
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var orders, events int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE customer_id = 'burst'`).Scan(&orders); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE record_key = $1 AND event_type = 'order.created'`, id).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if orders != 1 || events != 1 {
		t.Errorf("%d orders and %d order.created events for the key; want 1 and 1", orders, events)
	}
	testkit.Eventually(t, 60*time.Second, "the burst's order completes", func() bool {
		s := viewStatus(ctx, sys, id)
		return s == "DELIVERY_ASSIGNED" || s == "DELIVERED"
	})
	res := result()
	checkLoad(t, res)
	rep := harness.Verify(t, sys)
	record(row{"11 Idempotency-Key burst", sent(res), fmt.Sprintf("50 concurrent POSTs, one key, in %s: %v", secs(burst), statuses),
		"n/a (no fault)", invariants(rep), "empty"})
}
