package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/internal/verify"
	"github.com/orderflow/orderflow/test/harness"
)

// chaos skips unless fault injection was asked for: ORDERFLOW_CHAOS=1 runs every scenario (make
// chaos), ORDERFLOW_CHAOS=ci only the short subset make test runs.
func chaos(t *testing.T, inCI bool) {
	t.Helper()
	testkit.Integration(t)
	switch os.Getenv("ORDERFLOW_CHAOS") {
	case "1":
	case "ci":
		if !inCI {
			t.Skip("not in the CI subset: run `make chaos` for every scenario")
		}
	default:
		t.Skip("fault injection: run by `make chaos` (ORDERFLOW_CHAOS=1) or make test's CI subset (ORDERFLOW_CHAOS=ci)")
	}
}

func numCPU() int { return runtime.NumCPU() }

// env under which no business rule throttles the run (built-in catalog, plenty of drivers).
var env = []string{"DELIVERY_DRIVERS=200", "DELIVERY_DRIVER_CAPACITY=20", "DELIVERY_TIME_SPEED=600",
	"DELIVERY_SCHEDULER_INTERVAL=2s", "LOG_LEVEL=warn", "INVENTORY_CATALOG_FILE="}

// seed makes every scenario's load reproducible: CHAOS_SEED=N repeats a run, default 11.
var seed = func() uint64 {
	if n, err := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64); err == nil {
		return n
	}
	return 11
}()

// load runs the generator in the background; the returned function waits for its result.
func load(t *testing.T, sys *testkit.System, rate float64, d time.Duration, opts ...func(*loadgen.Config)) func() loadgen.Result {
	ctx := testkit.Context(t, 10*time.Minute)
	done := make(chan loadgen.Result, 1)
	go func() { done <- harness.Load(ctx, t, sys, rate, d, seed, opts...) }()
	return func() loadgen.Result { return <-done }
}

func wait(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// checkLoad fails the test on any load error other than the kinds allowed, on orders the load
// generator never saw finish and on outcomes other than the one each order was built for.
func checkLoad(t *testing.T, res loadgen.Result, allowed ...string) {
	t.Helper()
	for kind, n := range res.Errors {
		if !slices.Contains(allowed, kind) {
			t.Errorf("load errors %q: %d", kind, n)
		}
	}
	if res.Unfinished != 0 || res.Unexpected != 0 {
		t.Errorf("unfinished %d, unexpected outcome %d", res.Unfinished, res.Unexpected)
	}
	if res.Expired != 0 && !slices.Contains(allowed, "expired") {
		t.Errorf("%d orders expired (DEADLINE_EXCEEDED) in a run without deadline faults", res.Expired)
	}
}

// afterFault is the common end of a scenario, called the moment its fault ends: it measures the
// recovery (a new order completing end to end) while the load finishes, checks the load (errors of
// the allowed kinds aside) and verifies every invariant.
func afterFault(t *testing.T, sys *testkit.System, result func() loadgen.Result, allowed ...string) (loadgen.Result, time.Duration, verify.Report) {
	t.Helper()
	rec := recovery(t, sys, time.Now())
	res := result()
	checkLoad(t, res, allowed...)
	return res, rec(), harness.Verify(t, sys)
}

// recovery measures, in the background, the time from faultEnd until a new order placed after it
// completes end to end (POST retried until accepted, then the view polled until terminal).
func recovery(t *testing.T, sys *testkit.System, faultEnd time.Time) func() time.Duration {
	ctx := testkit.Context(t, 4*time.Minute)
	done := make(chan time.Duration, 1)
	go func() {
		id := ""
		for id == "" && ctx.Err() == nil {
			id = postOrder(ctx, sys, "", `{"customerId":"probe","currency":"EUR","items":[{"itemId":"SKU-001","quantity":1,"unitPrice":"1.00"}]}`)
			if id == "" {
				wait(ctx, 200*time.Millisecond)
			}
		}
		for ctx.Err() == nil {
			if s := viewStatus(ctx, sys, id); s == "DELIVERY_ASSIGNED" || s == "DELIVERED" {
				done <- time.Since(faultEnd)
				return
			}
			wait(ctx, 100*time.Millisecond)
		}
		done <- -1
	}()
	return func() time.Duration {
		d := <-done
		if d < 0 {
			t.Errorf("no new order completed within 4 minutes of the fault's end")
		}
		return d
	}
}

// postOrder places an order and returns its id ("" on any failure).
func postOrder(ctx context.Context, sys *testkit.System, idemKey, body string) string {
	id, _, _ := post(ctx, sys, idemKey, body)
	return id
}

func post(ctx context.Context, sys *testkit.System, idemKey, body string) (id string, status int, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+sys.Addrs["ORDER"]+"/api/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var o struct {
		OrderID string `json:"orderId"`
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return "", resp.StatusCode, err
	}
	return o.OrderID, resp.StatusCode, nil
}

// viewStatus reads an order's status from query-api ("" when unknown or unavailable).
func viewStatus(ctx context.Context, sys *testkit.System, id string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sys.Addrs["QUERY"]+"/api/orders/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct {
		Status string `json:"status"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return ""
	}
	return v.Status
}

// health returns the HTTP status of a service's /health.
func health(sys *testkit.System, prefix string) int {
	c := &http.Client{Timeout: 5 * time.Second} // a restarting service holds its port while it connects
	resp, err := c.Get("http://" + sys.Addrs[prefix] + "/health")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func sent(res loadgen.Result) string { return fmt.Sprintf("%d / %d", res.Sent, res.Accepted) }

func invariants(rep verify.Report) string {
	if !rep.OK() {
		return "**FAIL**"
	}
	return fmt.Sprintf("PASS (%d checks)", len(rep.Checks))
}

func secs(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// metric returns the sum of a Prometheus counter's samples on a service's /metrics.
func metric(t *testing.T, sys *testkit.System, prefix, name string) float64 {
	t.Helper()
	return metricAt(t, sys.Addrs[prefix], name)
}

func metricAt(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var sum float64
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			var v float64
			if _, err := fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

func itoa(n int64) string { return fmt.Sprint(n) }
