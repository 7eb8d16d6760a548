package disruptive

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/testkit"
)

const orderBody = `{"customerId":"stuck-walkthrough","currency":"EUR","items":[{"itemId":"SKU-001","quantity":1,"unitPrice":4.50}]}`

// TestStuckOrderFromAlertToTrace is the walk-through of docs/observability.md, on the real
// servers: the five services trace to Jaeger and are scraped by Prometheus with the alert rules
// while orders arrive; Cassandra is stopped. The operator's path is then checked step by step: the
// lag alert fires for query-api's group only; an order placed meanwhile is DELIVERY_ASSIGNED for
// order-service but its trace reaches delivery's publish and holds no query-api span (a process
// span is exported when the record is done); once Cassandra is back the view catches up and the
// trace shows the projection's processing, its wait in the partition before the worker took it, and
// the head record's span each failed attempt. UPDATE_SCREENSHOT=1 refreshes the guide's screenshots.
func TestStuckOrderFromAlertToTrace(t *testing.T) {
	disruptive(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed; scripts/infra up installs it (Debian package chromium)")
	}
	const jaeger = "http://127.0.0.1:16686"
	if resp, err := http.Get(jaeger + "/api/services"); err != nil || resp.Body.Close() != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Jaeger's query API does not answer (scripts/infra up starts it): %v", err)
	}
	ctx := testkit.Context(t, 8*time.Minute)
	sys := testkit.StartSystem(t, false, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_BSP_SCHEDULE_DELAY=200",
		"QUERY_TRACES_URL="+jaeger, "DELIVERY_DRIVERS=500", "DELIVERY_DRIVER_CAPACITY=10", "DELIVERY_TIME_SPEED=1", "LOG_LEVEL=error")
	prom := testkit.Prometheus(t, sys)
	client := &http.Client{Timeout: 10 * time.Second}
	place := func() (string, error) {
		resp, err := client.Post("http://"+sys.Addrs["ORDER"]+"/api/orders", "application/json", strings.NewReader(orderBody))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var o struct{ OrderID string }
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusCreated {
			return "", fmt.Errorf("POST /api/orders: %d %v", resp.StatusCode, err)
		}
		return o.OrderID, nil
	}
	status := func(prefix, id string) string {
		resp, err := client.Get("http://" + sys.Addrs[prefix] + "/api/orders/" + id)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var v struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return v.Status
	}
	// Ten orders a second until the end of the test.
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var first atomic.Value // the first order placed
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for lctx.Err() == nil {
			if id, err := place(); err == nil {
				first.CompareAndSwap(nil, id)
			}
			select {
			case <-lctx.Done():
			case <-tick.C:
			}
		}
	}()
	defer func() { stopLoad(); wg.Wait() }()

	// Healthy first: the read model follows the load.
	testkit.Eventually(t, time.Minute, "query-api to show the first order assigned", func() bool {
		id, _ := first.Load().(string)
		return id != "" && status("QUERY", id) == "DELIVERY_ASSIGNED"
	})
	testkit.Infra(t, "stop", "cassandra")
	stopped := true
	t.Cleanup(func() {
		if stopped {
			testkit.Infra(t, "start", "cassandra") // never leave the shared server down
		}
	})
	id, err := place()
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "order-service to see the order assigned", func() bool { return status("ORDER", id) == "DELIVERY_ASSIGNED" })

	// 1. The alert: query-api's group is falling behind, no other group is.
	group := sys.Groups["QUERY"]
	testkit.EventuallyWhy(t, 4*time.Minute, time.Second, "the lag alert to fire for query-api's group", func() string {
		firing, err := testkit.PromQuery(prom, `ALERTS{alertname="OrderflowConsumerLagGrowing",alertstate="firing"}`)
		if err != nil {
			return err.Error()
		}
		for _, s := range firing {
			if s.Metric["group"] != group {
				t.Fatalf("the lag alert fired for %s, which is not stuck", s.Metric["group"])
			}
		}
		if len(firing) == 0 {
			return "not firing yet"
		}
		return ""
	})
	// 2. The order: placed, paid and assigned for order-service; the read model has not moved.
	if s := status("QUERY", id); s == "DELIVERY_ASSIGNED" {
		t.Fatalf("query-api shows %s while Cassandra is down", s)
	}
	// 3. Its trace: everything up to delivery's publish; query-api has finished none of its records.
	spans := orderTrace(t, jaeger, id)
	for _, svc := range []string{"inventory-service", "payment-service", "delivery-service"} {
		if !hasSpan(spans, svc, " process") {
			t.Errorf("the stuck order's trace has no %s processing", svc)
		}
	}
	if !hasSpan(spans, "delivery-service", event.TopicDelivery+" publish") {
		t.Errorf("the stuck order's trace has no delivery publish")
	}
	if hasSpan(spans, "query-api", "") {
		t.Fatalf("query-api has spans in the stuck order's trace while Cassandra is down: %+v", spans)
	}
	screenshots(t, chromium, prom, "http://"+sys.Addrs["QUERY"]+"/?order="+id)

	// 4. Cassandra back: the view catches up, and the trace shows query-api's processing of the
	// order's events, started only then: each waited in its partition behind the record being
	// retried (whose own span, in its order's trace, carries the failed attempts).
	testkit.Infra(t, "start", "cassandra")
	stopped = false
	testkit.Eventually(t, 3*time.Minute, "the view to catch up", func() bool { return status("QUERY", id) == "DELIVERY_ASSIGNED" })
	testkit.EventuallyWhy(t, time.Minute, time.Second, "query-api's processing in the order's trace", func() string {
		spans = orderTrace(t, jaeger, id)
		var processed *traceSpan
		for i, s := range spans {
			if s.service == "query-api" && s.name == event.TopicOrders+" process" {
				processed = &spans[i]
			}
		}
		switch {
		case processed == nil:
			return "query-api's processing of order.created"
		case processed.handling.Sub(processed.start) < 5*time.Second:
			return fmt.Sprintf("query-api took order.created %s after fetching it; want the outage's wait", processed.handling.Sub(processed.start))
		}
		return ""
	})
	// The record at the head of a stuck partition: one span as long as the outage, each failed
	// attempt recorded on it (found by the attempt number of its second failure's event).
	retried := 0
	second := url.QueryEscape(`{"orderflow.attempt":"2"}`)
	for _, tr := range jaegerTraces(t, jaeger+"/api/traces?service=query-api&minDuration=5s&limit=100&lookback=1h&tags="+second) {
		for _, s := range tr {
			if s.service == "query-api" && strings.HasSuffix(s.name, " process") && s.failures >= 2 {
				retried++
			}
		}
	}
	if retried == 0 {
		t.Fatal("no query-api processing span of the outage carries its failed attempts")
	}
}

type traceSpan struct {
	service, name string
	start         time.Time
	duration      time.Duration
	handling      time.Time // the worker took the record (process spans)
	failures      int       // exception events: failed attempts
}

func hasSpan(spans []traceSpan, service, suffix string) bool {
	for _, s := range spans {
		if s.service == service && strings.HasSuffix(s.name, suffix) {
			return true
		}
	}
	return false
}

// orderTrace reads the trace that holds the order's placement from Jaeger's query API.
func orderTrace(t *testing.T, jaeger, id string) []traceSpan {
	t.Helper()
	tags := url.QueryEscape(fmt.Sprintf(`{%q:%q}`, obs.OrderIDKey, id))
	for _, tr := range jaegerTraces(t, jaeger+"/api/traces?service=order-service&limit=20&lookback=1h&tags="+tags) {
		if hasSpan(tr, "order-service", "POST /api/orders") {
			return tr
		}
	}
	t.Fatalf("no trace in Jaeger holds order %s's placement", id)
	return nil
}

// jaegerTraces reads the traces a search of Jaeger's query API finds.
func jaegerTraces(t *testing.T, search string) [][]traceSpan {
	t.Helper()
	resp, err := http.Get(search)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data []struct {
			Spans []struct {
				OperationName string `json:"operationName"`
				StartTime     int64  `json:"startTime"`
				Duration      int64  `json:"duration"`
				ProcessID     string `json:"processID"`
				Logs          []struct {
					Timestamp int64 `json:"timestamp"`
					Fields    []struct {
						Key   string `json:"key"`
						Value any    `json:"value"`
					} `json:"fields"`
				} `json:"logs"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	var out [][]traceSpan
	for _, tr := range r.Data {
		var spans []traceSpan
		for _, s := range tr.Spans {
			ts := traceSpan{service: tr.Processes[s.ProcessID].ServiceName, name: s.OperationName,
				start: time.UnixMicro(s.StartTime), duration: time.Duration(s.Duration) * time.Microsecond}
			for _, l := range s.Logs {
				for _, f := range l.Fields {
					switch {
					case f.Key == "event" && f.Value == "handling":
						ts.handling = time.UnixMicro(l.Timestamp)
					case f.Key == "event" && f.Value == "exception":
						ts.failures++
					}
				}
			}
			spans = append(spans, ts)
		}
		out = append(out, spans)
	}
	return out
}

// screenshots keeps what the operator sees at the stuck moment: Prometheus's graph of the lag by
// group, its alerts page, and the tracking page's waterfall of the stuck order (in the test's
// artifacts; in docs/images with UPDATE_SCREENSHOT=1).
func screenshots(t *testing.T, chromium, prom, page string) {
	t.Helper()
	alloc, cancel := chromedp.NewExecAllocator(testkit.Context(t, time.Minute), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	// Debian's Prometheus serves its classic web UI (the React one is not packaged).
	shots := []struct{ name, url, wait string }{
		{"stuck-lag.png", prom + "/classic/graph?g0.expr=" + url.QueryEscape("sum by (group) (kafka_consumer_lag)") + "&g0.tab=0&g0.range_input=5m", "body"},
		{"stuck-alerts.png", prom + "/classic/alerts", "body"},
		{"stuck-waterfall.png", page, "#trace .span-row"},
	}
	for _, s := range shots {
		if err := chromedp.Do(ctx, chromedp.Navigate(s.url), chromedp.WaitReady(s.wait), chromedp.Sleep(2*time.Second)); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var png []byte
		var err error
		if s.name == "stuck-waterfall.png" {
			png, err = chromedp.Run(ctx, chromedp.Screenshot("#trace"))
		} else {
			png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		dir := t.ArtifactDir()
		if os.Getenv("UPDATE_SCREENSHOT") == "1" {
			dir = filepath.Join("..", "..", "docs", "images")
		}
		if err := os.WriteFile(filepath.Join(dir, s.name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
