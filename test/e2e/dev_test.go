package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

// startDev runs `orderflow dev` on free ports with a fresh data folder (and the e2e catalog, or
// the built-in one) and extra environment, and waits until all five services are ready.
func startDev(t *testing.T, e2eCatalog bool, extra ...string) target {
	t.Helper()
	tg, _ := startDevIn(t, devDir(t), e2eCatalog, extra...)
	return tg
}

// devDir is a fresh folder readable by the unprivileged user dev mode switches to when the test
// runs as root.
func devDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "orderflow-dev-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startDevIn starts orderflow dev with its data in dir and returns the process too.
func startDevIn(t *testing.T, dir string, e2eCatalog bool, extra ...string) (target, *testkit.Process) {
	t.Helper()
	catFile := filepath.Join(dir, "catalog.json")
	if err := os.WriteFile(catFile, []byte(catalog), 0o644); err != nil {
		t.Fatal(err)
	}
	port := func() string { _, p, _ := net.SplitHostPort(testkit.FreeAddr(t)); return p }
	kafkaPort, pgPort, redisPort := port(), port(), port()
	addrs := map[string]string{}
	env := []string{"DEV_DATA_DIR=" + filepath.Join(dir, "data"), "DEV_KAFKA_PORT=" + kafkaPort, "DEV_POSTGRES_PORT=" + pgPort,
		"DEV_REDIS_PORT=" + redisPort, "DELIVERY_DRIVERS=50", "DELIVERY_DRIVER_CAPACITY=10",
		"DELIVERY_TIME_SPEED=600", "DELIVERY_SCHEDULER_INTERVAL=1s", "LOG_LEVEL=warn"}
	if e2eCatalog {
		env = append(env, "INVENTORY_CATALOG_FILE="+catFile)
	}
	for _, s := range testkit.Services {
		addrs[s.Prefix] = testkit.FreeAddr(t)
		env = append(env, s.Prefix+"_HTTP_ADDR="+addrs[s.Prefix])
	}
	p := testkit.Start(t, "dev", addrs["QUERY"], append(env, extra...)...)
	for _, s := range testkit.Services {
		testkit.WaitReady(t, p, addrs[s.Prefix])
	}
	dbs := map[string]pg.Config{}
	for prefix, name := range map[string]string{"ORDER": "order_db", "INVENTORY": "inventory_db", "PAYMENT": "delivery_eta", "DELIVERY": "delivery_db"} {
		c := testkit.PGConfig()
		c.Port, _ = strconv.Atoi(pgPort)
		c.Database = name
		dbs[prefix] = c
	}
	return target{addrs: addrs, dbs: dbs, kafka: kafka.Config{Brokers: []string{"127.0.0.1:" + kafkaPort}}}, p
}

// TestDevModeKeepsOrdersAcrossRestart: Ctrl-C (SIGTERM) stops dev mode cleanly; started again on
// the same folder it still has the orders, and the in-memory view is rebuilt from the topics.
func TestDevModeKeepsOrdersAcrossRestart(t *testing.T) {
	e2e(t)
	dir := devDir(t)
	tg, p := startDevIn(t, dir, false)
	ctx := testkit.Context(t, 2*time.Minute)
	body := `{"customerId":"restart","currency":"EUR","items":[{"itemId":"SKU-003","quantity":1,"unitPrice":"2.00"}]}`
	resp, err := http.Post("http://"+tg.addrs["ORDER"]+"/api/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var o struct{ OrderID string }
	_ = json.NewDecoder(resp.Body).Decode(&o)
	resp.Body.Close()
	status := func(tg target) string {
		r, err := http.Get("http://" + tg.addrs["QUERY"] + "/api/orders/" + o.OrderID)
		if err != nil {
			return ""
		}
		defer r.Body.Close()
		var v struct{ Status string }
		_ = json.NewDecoder(r.Body).Decode(&v)
		return v.Status
	}
	testkit.Eventually(t, 30*time.Second, "the order completes", func() bool { return status(tg) == "DELIVERY_ASSIGNED" || status(tg) == "DELIVERED" })
	p.Stop()
	if st := p.State(); st == nil || !st.Success() {
		t.Fatalf("dev mode did not stop cleanly on SIGTERM: %v", st)
	}
	tg2, _ := startDevIn(t, dir, false)
	testkit.Eventually(t, 30*time.Second, "the view rebuilt after the restart", func() bool {
		s := status(tg2)
		return s == "DELIVERY_ASSIGNED" || s == "DELIVERED"
	})
	// The order row survived in Postgres too.
	c := tg2.dbs["ORDER"]
	conn, err := pgx.Connect(ctx, c.URL(c.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM orders WHERE order_id = $1`, o.OrderID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("order row after restart: %d (%v)", n, err)
	}
}

// TestDevModeOutputIsReadable: orderflow dev prints short text log lines (one start-up line per
// service, no configuration dumps, no JSON) and a copy-paste command that places an order and
// prints its tracking link, which works.
func TestDevModeOutputIsReadable(t *testing.T) {
	e2e(t)
	tg, p := startDevIn(t, devDir(t), false, "LOG_LEVEL=info")
	var try string
	testkit.Eventually(t, 30*time.Second, "the try-it line", func() bool {
		_, after, ok := strings.Cut(p.Output(), "Place an order and get its tracking link (copy and paste):\n")
		try, _, _ = strings.Cut(strings.TrimSpace(after), "\n")
		return ok && try != ""
	})
	out := p.Output()
	started := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			t.Errorf("a JSON log line in dev mode: %s", line)
		}
		if strings.Contains(line, " started ") {
			started++
			if !strings.Contains(line, "version=") || !strings.Contains(line, "addr=") || !strings.Contains(line, "dependencies=") {
				t.Errorf("start-up line without version, address or dependencies: %s", line)
			}
		}
	}
	if started != len(testkit.Services) || strings.Contains(out, "configuration") || strings.Contains(out, "POSTGRES_HOST") {
		t.Errorf("%d start-up lines (want %d) or a configuration dump in:\n%s", started, len(testkit.Services), out)
	}
	link, err := exec.Command("bash", "-c", try).Output()
	if err != nil {
		t.Fatalf("%s: %v", try, err)
	}
	prefix := "http://" + tg.addrs["QUERY"] + "/?order="
	id, ok := strings.CutPrefix(strings.TrimSpace(string(link)), prefix)
	if !ok || len(id) != 36 {
		t.Fatalf("the command printed %q, want %s<orderId>", link, prefix)
	}
	testkit.Eventually(t, 30*time.Second, "the order in the read model", func() bool {
		resp, err := http.Get("http://" + tg.addrs["QUERY"] + "/api/orders/" + id)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
