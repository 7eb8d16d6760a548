// Package e2e runs the whole saga: all five services from the built binary against the real
// servers, 200 orders with a designed mix of outcomes, and checks every store afterwards.
//
// It runs in make test's serial step (ORDERFLOW_E2E=1), after the parallel tests, because it
// asserts that the shared dead-letter topics stay empty.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

type outcome int

const (
	success outcome = iota
	unknownItem
	insufficientStock
	declined
)

type order struct {
	id    string
	kind  outcome
	body  string
	total string
	items map[string]int
}

const catalog = `{"items":[
 {"itemId":"E2E-A","name":"a","stock":100000},{"itemId":"E2E-B","name":"b","stock":100000},
 {"itemId":"E2E-C","name":"c","stock":100000},{"itemId":"E2E-LOW","name":"low","stock":10}]}`

var initialStock = map[string]int{"E2E-A": 100000, "E2E-B": 100000, "E2E-C": 100000, "E2E-LOW": 10}

// start runs the five services with the e2e catalog and settings under which no business rule
// throttles the run (enough drivers, deliveries completing in seconds); extra env wins.
func start(t *testing.T, oneProcess bool, extra ...string) *testkit.System {
	t.Helper()
	catFile := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(catFile, []byte(catalog), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"INVENTORY_CATALOG_FILE=" + catFile, "DELIVERY_DRIVERS=50", "DELIVERY_DRIVER_CAPACITY=10",
		"DELIVERY_TIME_SPEED=600", "DELIVERY_SCHEDULER_INTERVAL=1s", "LOG_LEVEL=warn"}
	return testkit.StartSystem(t, oneProcess, append(env, extra...)...)
}

func mix(n int) []*order {
	var out []*order
	for i := 0; i < n; i++ {
		o := &order{items: map[string]int{}}
		switch i % 10 {
		case 7:
			o.kind = unknownItem
			o.body = `{"customerId":"e2e-%d","currency":"EUR","items":[{"itemId":"E2E-A","quantity":1,"unitPrice":3.10},{"itemId":"E2E-NOPE","quantity":1,"unitPrice":1}]}`
			o.total = "4.10"
		case 8:
			o.kind = insufficientStock
			o.body = `{"customerId":"e2e-%d","currency":"EUR","items":[{"itemId":"E2E-LOW","quantity":50,"unitPrice":2.00}]}`
			o.total = "100.00"
		case 9:
			o.kind = declined
			o.body = `{"customerId":"e2e-%d","currency":"EUR","items":[{"itemId":"E2E-B","quantity":2,"unitPrice":3000.00}]}`
			o.total = "6000.00"
			o.items["E2E-B"] = 2
		default:
			o.kind = success
			o.body = `{"customerId":"e2e-%d","currency":"EUR","items":[{"itemId":"E2E-A","quantity":2,"unitPrice":12.25},{"itemId":"E2E-C","quantity":1,"unitPrice":0.55}]}`
			o.total = "25.05"
			o.items["E2E-A"], o.items["E2E-C"] = 2, 1
		}
		o.body = fmt.Sprintf(o.body, i%17)
		out = append(out, o)
	}
	return out
}

// target is a running system as the saga test sees it: HTTP addresses, the services' databases
// and the Kafka cluster (native servers, or the embedded ones of orderflow dev).
type target struct {
	addrs map[string]string    // ORDER, QUERY → 127.0.0.1:port
	dbs   map[string]pg.Config // ORDER, INVENTORY, PAYMENT, DELIVERY
	kafka kafka.Config
}

func nativeTarget(sys *testkit.System) target {
	return target{addrs: sys.Addrs, dbs: sys.DBs, kafka: testkit.KafkaConfig()}
}

func runSaga(t *testing.T, begin func(t *testing.T) target) {
	ctx := testkit.Context(t, 5*time.Minute)
	sys := begin(t)
	dlqBefore, err := kafka.DLQCounts(ctx, sys.kafka, event.DLQTopics()...)
	if err != nil {
		t.Fatal(err)
	}
	orders := mix(200)

	// POST with a little concurrency.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, o := range orders {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			resp, err := http.Post("http://"+sys.addrs["ORDER"]+"/api/orders", "application/json", strings.NewReader(o.body))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var r struct {
				OrderID     string
				TotalAmount json.Number
			}
			_ = json.NewDecoder(resp.Body).Decode(&r)
			if resp.StatusCode != 201 || r.TotalAmount.String() != o.total {
				t.Errorf("POST %d total %s want %s", resp.StatusCode, r.TotalAmount, o.total)
			}
			o.id = r.OrderID
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Watch the query-api until every order is terminal.
	views := map[string]map[string]any{}
	deadline := time.Now().Add(3 * time.Minute)
	for len(views) < len(orders) {
		for _, o := range orders {
			if views[o.id] != nil {
				continue
			}
			resp, err := http.Get("http://" + sys.addrs["QUERY"] + "/api/orders/" + o.id)
			if err != nil {
				continue
			}
			var v map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if s, _ := v["status"].(string); s == "INVENTORY_REJECTED" || s == "PAYMENT_FAILED" || s == "DELIVERY_ASSIGNED" || s == "DELIVERED" {
				views[o.id] = v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d orders reached a terminal status", len(views), len(orders))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, o := range orders {
		v := views[o.id]
		check := func(ok bool, what string) {
			if !ok {
				t.Errorf("order %s (%d): %s; view %v", o.id, o.kind, what, v)
			}
		}
		check(fmt.Sprint(v["totalAmount"]) == strings.TrimRight(strings.TrimRight(o.total, "0"), "."), "total")
		switch o.kind {
		case success:
			check(v["status"] == "DELIVERY_ASSIGNED" || v["status"] == "DELIVERED", "status")
			check(v["paymentId"] != nil && v["deliveryId"] != nil && v["driverName"] != nil && v["estimatedDeliveryTime"] != nil, "payment and delivery fields")
		case unknownItem:
			check(v["status"] == "INVENTORY_REJECTED" && v["rejectionReason"] == event.ReasonUnknownItem, "unknown item rejection")
		case insufficientStock:
			check(v["status"] == "INVENTORY_REJECTED" && v["rejectionReason"] == event.ReasonInsufficientStock, "stock rejection")
		case declined:
			check(v["status"] == "PAYMENT_FAILED" && v["failureReason"] == "AMOUNT_LIMIT_EXCEEDED" && v["paymentId"] != nil, "payment decline")
		}
	}

	// order-service follows the saga too: its GET reaches the same terminal status (DELIVERED may
	// have followed DELIVERY_ASSIGNED meanwhile, so it may be further than the view read above).
	for _, o := range orders {
		want, _ := event.StatusRank(views[o.id]["status"].(string))
		testkit.Eventually(t, 30*time.Second, fmt.Sprintf("order-service to report order %s at least as far as the view's %v", o.id, views[o.id]["status"]), func() bool {
			resp, err := http.Get("http://" + sys.addrs["ORDER"] + "/api/orders/" + o.id)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var v struct{ Status string }
			_ = json.NewDecoder(resp.Body).Decode(&v)
			r, known := event.StatusRank(v.Status)
			return known && r >= want && event.TerminalStatus(v.Status)
		})
	}

	// Sources of truth.
	db := func(prefix string) *pgx.Conn { return dbConn(t, sys.dbs[prefix]) }
	var dupPayments int
	if err := db("PAYMENT").QueryRow(ctx, `SELECT count(*) FROM (SELECT order_id FROM payments GROUP BY order_id HAVING count(*) > 1) d`).Scan(&dupPayments); err != nil || dupPayments != 0 {
		t.Errorf("orders with more than one payment: %d (%v)", dupPayments, err)
	}
	// Stock conservation: seeded = available + held by live reservations, and the held units are
	// exactly those of successful orders (declined orders' stock came back).
	inv := db("INVENTORY")
	heldBySuccess := map[string]int{}
	for _, o := range orders {
		if o.kind == success {
			for it, q := range o.items {
				heldBySuccess[it] += q
			}
		}
	}
	// Wait for the compensation of the declined orders (inventory.released) to be applied.
	waitStock := time.Now().Add(time.Minute)
	for item, initial := range initialStock {
		for {
			var available, reserved, held int
			err := inv.QueryRow(ctx, `SELECT s.available, s.reserved, coalesce((SELECT sum(ri.quantity) FROM reservation_items ri
				JOIN reservations r USING (reservation_id) WHERE r.status = 'RESERVED' AND ri.item_id = s.item_id), 0)
				FROM stock s WHERE s.item_id = $1`, item).Scan(&available, &reserved, &held)
			if err != nil {
				t.Fatal(err)
			}
			ok := available+held == initial && reserved == held && held == heldBySuccess[item] && available >= 0
			if ok {
				break
			}
			if time.Now().After(waitStock) {
				t.Errorf("%s: initial %d, available %d, reserved column %d, held by live reservations %d, expected held %d",
					item, initial, available, reserved, held, heldBySuccess[item])
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var overCapacity int
	_ = db("DELIVERY").QueryRow(ctx, `SELECT count(*) FROM drivers WHERE active_deliveries > 10`).Scan(&overCapacity)
	if overCapacity != 0 {
		t.Errorf("%d drivers above capacity", overCapacity)
	}
	dlqAfter, err := kafka.DLQCounts(ctx, sys.kafka, event.DLQTopics()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range event.DLQTopics() {
		// Suites run one at a time (-p 1); the poison scenario of test/chaos leaves records behind.
		if dlqAfter[topic] != dlqBefore[topic] {
			t.Errorf("%s gained %d records during the run; nothing may be dead-lettered", topic, dlqAfter[topic]-dlqBefore[topic])
		}
	}
	var summary bytes.Buffer
	counts := map[string]int{}
	for _, v := range views {
		counts[v["status"].(string)]++
	}
	fmt.Fprintf(&summary, "%v", counts)
	t.Logf("200 orders terminal: %s", summary.String())
}

func e2e(t *testing.T) {
	testkit.Integration(t)
	if os.Getenv("ORDERFLOW_E2E") != "1" {
		t.Skip("end-to-end saga: run by `make test` in its serial step (ORDERFLOW_E2E=1)")
	}
}

func TestSagaSeparateProcesses(t *testing.T) {
	e2e(t)
	runSaga(t, func(t *testing.T) target { return nativeTarget(start(t, false)) })
}

func TestSagaOneProcess(t *testing.T) {
	e2e(t)
	runSaga(t, func(t *testing.T) target { return nativeTarget(start(t, true)) })
}

// TestSagaDevMode runs the same saga against `orderflow dev`: embedded broker, Redis and
// Postgres, in-memory read model.
func TestSagaDevMode(t *testing.T) {
	e2e(t)
	runSaga(t, func(t *testing.T) target { return startDev(t, true) })
}
