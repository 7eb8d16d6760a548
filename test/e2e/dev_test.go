package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

// startDev runs `orderflow dev` on free ports with a fresh data folder (and the e2e catalog, or
// the built-in one), and waits until all five services are ready.
func startDev(t *testing.T, e2eCatalog bool) target {
	t.Helper()
	// Readable by the unprivileged user dev mode switches to when the test runs as root.
	dir, err := os.MkdirTemp("", "orderflow-dev-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
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
	p := testkit.Start(t, "dev", addrs["QUERY"], env...)
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
	return target{addrs: addrs, dbs: dbs, kafka: kafka.Config{Brokers: []string{"127.0.0.1:" + kafkaPort}}}
}
