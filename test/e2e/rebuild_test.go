package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestRebuildUnderLoadWithoutDowntime: orders are placed at 20/s while readers read every order
// they have seen in the view, over and over, and `orderflow query rebuild` runs meanwhile (as an
// operator would run it, with the services' environment). No read of an order already seen may
// fail or answer 404, and no status may go backwards; afterwards the new generation serves reads
// and every order placed is in it.
func TestRebuildUnderLoadWithoutDowntime(t *testing.T) {
	e2e(t)
	sys := start(t, false)
	ctx := testkit.Context(t, 8*time.Minute)
	base := sys.Env["CASSANDRA_KEYSPACE"]

	var (
		mu      sync.Mutex
		placed  []string           // accepted by order-service
		seen    = map[string]int{} // in the view: the highest status rank read so far
		reads   atomic.Int64
		badMu   sync.Mutex
		bad     []string
		stopped = make(chan struct{})
		wg      sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		badMu.Lock()
		defer badMu.Unlock()
		if len(bad) < 20 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	wg.Go(func() { // 20 orders/s
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopped:
				return
			case <-tick.C:
			}
			body := fmt.Sprintf(`{"customerId":"rebuild-%d","currency":"EUR","items":[{"itemId":"E2E-A","quantity":1,"unitPrice":"2.50"}]}`, i%10)
			resp, err := http.Post("http://"+sys.Addrs["ORDER"]+"/api/orders", "application/json", strings.NewReader(body))
			if err != nil {
				fail("POST: %v", err)
				continue
			}
			var o struct {
				OrderID string `json:"orderId"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&o)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated || o.OrderID == "" {
				fail("POST answered %d", resp.StatusCode)
				continue
			}
			mu.Lock()
			placed = append(placed, o.OrderID)
			mu.Unlock()
		}
	})
	// read returns the order's status rank (-1 when the view has no row, -2 on another answer).
	read := func(id string) (int, string) {
		resp, err := http.Get("http://" + sys.Addrs["QUERY"] + "/api/orders/" + id)
		if err != nil {
			return -2, err.Error()
		}
		defer resp.Body.Close()
		reads.Add(1)
		var v struct {
			Status string `json:"status"`
		}
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return -1, "404"
		case resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil:
			return -2, resp.Status
		}
		rank, ok := event.StatusRank(v.Status)
		if !ok {
			return -2, "unknown status " + v.Status
		}
		return rank, v.Status
	}
	for r := range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stopped:
					return
				default:
				}
				mu.Lock()
				ids := append([]string(nil), placed...)
				mu.Unlock()
				for i := r; i < len(ids); i += 3 {
					id := ids[i]
					rank, what := read(id)
					mu.Lock()
					prev, wasSeen := seen[id]
					switch {
					case rank == -2:
						fail("order %s: %s", id, what)
					case wasSeen && rank < 0:
						fail("order %s, seen before at rank %d, now answers %s", id, prev, what)
					case wasSeen && rank < prev:
						fail("order %s went back from rank %d to %s", id, prev, what)
					case rank >= 0 && (!wasSeen || rank > prev):
						seen[id] = rank
					}
					mu.Unlock()
				}
			}
		})
	}

	// seenSince counts the orders placed from index i on that the readers have seen in the view.
	seenSince := func(i int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, id := range placed[min(i, len(placed)):] {
			if _, ok := seen[id]; ok {
				n++
			}
		}
		return n
	}
	testkit.Eventually(t, time.Minute, "100 orders in the view before the rebuild", func() bool { return seenSince(0) >= 100 })
	readsBefore := reads.Load()
	env := []string{}
	for k, v := range sys.Env {
		env = append(env, k+"="+v)
	}
	cmd := exec.CommandContext(ctx, testkit.Binary(t), "query", "rebuild")
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("orderflow query rebuild: %v\n%s", err, out.String())
	}
	took := time.Since(began)
	readsDuring := reads.Load() - readsBefore
	mu.Lock()
	after := len(placed)
	mu.Unlock()
	testkit.Eventually(t, time.Minute, "100 orders placed after the switch in the view", func() bool { return seenSince(after) >= 100 })
	close(stopped)
	wg.Wait()

	t.Logf("rebuild took %s with %d reads meanwhile: %s", took.Round(time.Millisecond), readsDuring, lastLine(out.String()))
	for _, b := range bad {
		t.Error(b)
	}
	if readsDuring < 100 {
		t.Errorf("only %d reads during the rebuild: the test did not read through it", readsDuring)
	}
	// The switch happened: the generation row names the new keyspace, and the old tables are gone.
	cl := gocql.NewCluster("127.0.0.1")
	cl.Timeout = 10 * time.Second
	s, err := cl.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var serving string
	if err := s.Query(`SELECT serving FROM `+base+`.read_model_generation WHERE id = 'current'`).ScanContext(ctx, &serving); err != nil {
		t.Fatal(err)
	}
	if serving != base+"_g1" {
		t.Fatalf("serving %q after the rebuild, want %s_g1", serving, base)
	}
	var n int
	if err := s.Query(`SELECT count(*) FROM system_schema.tables WHERE keyspace_name = ? AND table_name IN ('orders', 'order_view', 'order_events')`, base).
		ScanContext(ctx, &n); err != nil || n != 0 {
		t.Fatalf("the old generation's tables still exist (%d, %v)", n, err)
	}
	// Every order placed, before, during and after the rebuild, is in the new generation.
	mu.Lock()
	ids := append([]string(nil), placed...)
	mu.Unlock()
	testkit.EventuallyWhy(t, time.Minute, 500*time.Millisecond, "every placed order in the view", func() string {
		missing := 0
		for _, id := range ids {
			if rank, _ := read(id); rank < 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Sprintf("%d of %d orders", missing, len(ids))
		}
		return ""
	})
	t.Logf("%d orders placed, %d seen in the view during the run, %d reads", len(ids), len(seen), reads.Load())
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
