package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/test/harness"
)

const cancelBody = `{"customerId":"e2e-cancel","currency":"EUR","items":[{"itemId":"E2E-A","quantity":2,"unitPrice":5.00}]}`

// client is a small HTTP client for the running system.
type client struct {
	t    *testing.T
	sys  *testkit.System
	http *http.Client
}

func (c client) place() string {
	c.t.Helper()
	resp, err := c.http.Post("http://"+c.sys.Addrs["ORDER"]+"/api/orders", "application/json", strings.NewReader(cancelBody))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct{ OrderID string }
	_ = json.NewDecoder(resp.Body).Decode(&o)
	if resp.StatusCode != 201 || o.OrderID == "" {
		c.t.Fatalf("POST /api/orders: %d", resp.StatusCode)
	}
	return o.OrderID
}

// cancel asks to cancel id and returns the status code (202 or 409; anything else fails the test).
func (c client) cancel(id string) int {
	resp, err := c.http.Post("http://"+c.sys.Addrs["ORDER"]+"/api/orders/"+id+"/cancel", "application/json", strings.NewReader(`{"comment":"e2e"}`))
	if err != nil {
		c.t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusConflict {
		c.t.Errorf("cancel %s: %d", id, resp.StatusCode)
	}
	return resp.StatusCode
}

// status returns the status prefix's service (ORDER or QUERY) reports for id ("" if unknown yet).
func (c client) status(prefix, id string) string {
	resp, err := c.http.Get("http://" + c.sys.Addrs[prefix] + "/api/orders/" + id)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v.Status
}

func (c client) waitStatus(prefix, id string, d time.Duration, want ...string) string {
	c.t.Helper()
	var got string
	testkit.Eventually(c.t, d, fmt.Sprintf("%s to report order %s as one of %v", prefix, id, want), func() bool {
		got = c.status(prefix, id)
		for _, w := range want {
			if got == w {
				return true
			}
		}
		return false
	})
	return got
}

func dbConn(t *testing.T, c pg.Config) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), c.URL(c.Database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// countBy runs a "SELECT key, count(*) ... GROUP BY key" query and returns the counts.
func countBy(t *testing.T, conn *pgx.Conn, sql string, args ...any) map[string]int {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var k string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCancellationRacesOnRealServers cancels orders at every stage of the saga on the five running
// services, then checks every invariant with verify. Stages: before the payment (payment-service
// stopped: the reservation is released before it is charged, so it never is), right after placement
// (racing the reservation), at random moments around the payment, after the assignment (the driver
// is freed and the payment refunded), around the delivery's completion (accepted, or refused at the
// cut-off: 409, or a visible cancellation.refused), and a storm of duplicate cancellations. The
// stores must show that each race really went each way.
func TestCancellationRacesOnRealServers(t *testing.T) {
	e2e(t)
	sys := start(t, false)
	c := client{t: t, sys: sys, http: &http.Client{Timeout: 10 * time.Second}}
	rng := rand.New(rand.NewPCG(7, 11))
	var mu sync.Mutex
	codes := map[string]map[int]int{}
	record := func(stage string, code int) {
		mu.Lock()
		defer mu.Unlock()
		if codes[stage] == nil {
			codes[stage] = map[int]int{}
		}
		codes[stage][code]++
	}

	// Before the payment: payment-service stopped while the orders are reserved, cancelled and
	// released (frozen, it would still hold records fetched before the release).
	sys.Procs["PAYMENT"].Stop()
	var frozen []string
	for range 8 {
		id := c.place()
		c.waitStatus("QUERY", id, time.Minute, event.OrderStatusInventoryReserved)
		record("before payment", c.cancel(id))
		frozen = append(frozen, id)
	}
	for _, id := range frozen {
		c.waitStatus("QUERY", id, time.Minute, event.OrderStatusCancelled)
	}
	sys.Procs["PAYMENT"].Restart(t)

	var wg sync.WaitGroup
	stage := func(name string, n int, run func(id string, delay time.Duration)) {
		for range n {
			delay := time.Duration(rng.Int64N(int64(10 * time.Second)))
			wg.Go(func() { run(c.place(), delay) })
		}
	}
	stage("at placement", 10, func(id string, _ time.Duration) { record("at placement", c.cancel(id)) })
	stage("around payment", 20, func(id string, d time.Duration) {
		time.Sleep(d / 50) // 0-200 ms
		record("around payment", c.cancel(id))
	})
	stage("after assignment", 10, func(id string, _ time.Duration) {
		c.waitStatus("ORDER", id, time.Minute, event.OrderStatusDeliveryAssigned)
		record("after assignment", c.cancel(id))
	})
	// A delivery takes 3-6 s (speed 600): a cancellation 0-10 s after the assignment meets it before
	// or after the cut-off.
	stage("around completion", 25, func(id string, d time.Duration) {
		c.waitStatus("ORDER", id, time.Minute, event.OrderStatusDeliveryAssigned, event.OrderStatusDelivered)
		time.Sleep(d)
		record("around completion", c.cancel(id))
	})
	stage("storm", 5, func(id string, d time.Duration) {
		time.Sleep(d / 50)
		var storm sync.WaitGroup
		for range 20 {
			storm.Go(func() { record("storm", c.cancel(id)) })
		}
		storm.Wait()
	})
	wg.Wait()
	t.Logf("answers by stage: %v", codes)
	if codes["after assignment"][http.StatusAccepted] != 10 || codes["storm"][http.StatusAccepted] != 100 || codes["before payment"][http.StatusAccepted] != 8 {
		t.Fatalf("answers %v: cancellations before the cut-off must all be accepted (202)", codes)
	}

	harness.Verify(t, sys)
	pay := countBy(t, dbConn(t, sys.DBs["PAYMENT"]), `SELECT status, count(*) FROM payments GROUP BY status`)
	del := countBy(t, dbConn(t, sys.DBs["DELIVERY"]), `SELECT coalesce(refusal, 'ACCEPTED'), count(*) FROM cancellations GROUP BY 1`)
	freed := countBy(t, dbConn(t, sys.DBs["DELIVERY"]), `SELECT status, count(*) FROM deliveries GROUP BY status`)
	ord := countBy(t, dbConn(t, sys.DBs["ORDER"]), `SELECT status, count(*) FROM orders GROUP BY status`)
	t.Logf("payments %v, delivery decisions %v, deliveries %v, orders %v", pay, del, freed, ord)
	frozenNeverCharged := countBy(t, dbConn(t, sys.DBs["PAYMENT"]), `SELECT status, count(*) FROM payments WHERE order_id = ANY($1) GROUP BY status`, frozen)
	for what, ok := range map[string]bool{
		"orders cancelled before their payment were never charged": frozenNeverCharged["CANCELLED"] == len(frozen) && len(frozenNeverCharged) == 1,
		"authorized payments were refunded":                        pay["REFUNDED"] > 0,
		"assigned drivers were freed":                              freed["CANCELLED"] >= 10,
		"cancellations met the cut-off (409 or refused)":           codes["around completion"][http.StatusConflict]+del[event.RefusalDelivered] > 0,
		"cancellations beat the cut-off":                           codes["around completion"][http.StatusAccepted]-del[event.RefusalDelivered] > 0,
		"every accepted cancellation ended CANCELLED":              ord[event.OrderStatusCancelled] == del["ACCEPTED"],
	} {
		if !ok {
			t.Errorf("not shown: %s", what)
		}
	}
}

// TestDeadlineExpiresWhilePaymentIsStopped: with payment-service stopped, orders wait after their
// reservation until the deadline cancels them (DEADLINE_EXCEEDED): stock comes back at once; when
// payment-service is started again, it charges none of them.
func TestDeadlineExpiresWhilePaymentIsStopped(t *testing.T) {
	e2e(t)
	sys := start(t, false, "ORDER_DEADLINE=4s")
	c := client{t: t, sys: sys, http: &http.Client{Timeout: 10 * time.Second}}
	sys.Procs["PAYMENT"].Stop()
	var ids []string
	for range 10 {
		ids = append(ids, c.place())
	}
	for _, id := range ids {
		c.waitStatus("ORDER", id, time.Minute, event.OrderStatusCancelled)
	}
	inv := dbConn(t, sys.DBs["INVENTORY"])
	testkit.Eventually(t, 30*time.Second, "the expired orders' stock to come back", func() bool {
		var available int
		return inv.QueryRow(context.Background(), `SELECT available FROM stock WHERE item_id = 'E2E-A'`).Scan(&available) == nil && available == initialStock["E2E-A"]
	})
	sys.Procs["PAYMENT"].Restart(t)
	harness.Verify(t, sys)
	pay := countBy(t, dbConn(t, sys.DBs["PAYMENT"]), `SELECT status, count(*) FROM payments GROUP BY status`)
	if pay["CANCELLED"] != len(ids) || len(pay) != 1 {
		t.Fatalf("payments %v: every expired order must be left uncharged (CANCELLED)", pay)
	}
	reasons := countBy(t, dbConn(t, sys.DBs["ORDER"]), `SELECT cancel_reason, count(*) FROM orders GROUP BY 1`)
	if reasons[event.ReasonDeadlineExceeded] != len(ids) {
		t.Fatalf("cancel reasons %v", reasons)
	}
	for _, id := range ids {
		if s := c.status("QUERY", id); s != event.OrderStatusCancelled {
			t.Fatalf("view of %s: %s", id, s)
		}
	}
}
