//go:build devmode

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/orderflow/orderflow/internal/devmode"
	"github.com/orderflow/orderflow/internal/platform/config"
)

// runDev is `orderflow dev`: the embedded servers, then every service in this process with the
// same code as in production, pointed at them.
func runDev(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	e := config.New(getenv)
	dc := devmode.Configure(e)
	if err := e.Err(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "orderflow dev: starting embedded Postgres, Kafka and Redis (data in %s)\n", dc.Dir)
	srv, err := devmode.Start(ctx, dc, io.Discard)
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(stdout, "orderflow dev: stopping the embedded servers:", err)
		}
	}()
	env := devEnv(getenv, srv.Env, srv.Traces)
	if err := createTopics(ctx, env, io.Discard); err != nil {
		return fmt.Errorf("create topics on the embedded broker: %w", err)
	}
	go announce(ctx, stdout, env, srv.Env)
	err = runAll(ctx, env, stdout)
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return err
}

// devEnv overlays the embedded servers' addresses (they win: a shell set up for the native stack
// must not redirect dev mode) and development defaults the user has not set.
func devEnv(getenv func(string) string, servers map[string]string, traces string) func(string) string {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	queryAddr, orderAddr := or("QUERY_HTTP_ADDR", "127.0.0.1:8080"), or("ORDER_HTTP_ADDR", "127.0.0.1:8081")
	defaults := map[string]string{
		// The tracking page (served by query-api) posts orders to order-service.
		"ORDER_CORS_ORIGINS":  "http://" + queryAddr + ",http://localhost:" + portOf(queryAddr),
		"QUERY_ORDER_API_URL": "http://" + orderAddr,
		// The page offers what inventory-service seeded.
		"QUERY_CATALOG_FILE": getenv("INVENTORY_CATALOG_FILE"),
		// ETAs move visibly on the page.
		"DELIVERY_SCHEDULER_INTERVAL": "5s",
		// A person reads these logs.
		"LOG_FORMAT": "text",
		// Every order's trace, in the page's waterfall a moment after each step.
		"OTEL_EXPORTER_OTLP_ENDPOINT": traces,
		"QUERY_TRACES_URL":            traces,
		"OTEL_BSP_SCHEDULE_DELAY":     "250",
	}
	return func(k string) string {
		if v, ok := servers[k]; ok {
			return v
		}
		return or(k, defaults[k])
	}
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}

// ready reports whether url answers 200 within a second (a starting service holds its port while
// it connects to its dependencies, so a request may wait).
func ready(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// announce prints the URLs once every service is ready.
func announce(ctx context.Context, w io.Writer, env func(string) string, servers map[string]string) {
	addr := func(prefix, def string) string {
		if a := env(prefix + "_HTTP_ADDR"); a != "" {
			return a
		}
		return def
	}
	query := "http://" + addr("QUERY", "127.0.0.1:8080")
	for _, a := range []string{addr("ORDER", "127.0.0.1:8081"), addr("PAYMENT", "127.0.0.1:8082"),
		addr("INVENTORY", "127.0.0.1:8083"), addr("DELIVERY", "127.0.0.1:8084"), addr("QUERY", "127.0.0.1:8080")} {
		for ctx.Err() == nil && !ready(ctx, "http://"+a+"/readyz") {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if ctx.Err() != nil {
		return
	}
	fmt.Fprintf(w, `
orderflow dev is up.
  tracking page   %s/
  order API       %s/api/orders
  Kafka (kcat)    %s    Postgres  127.0.0.1:%s (postgres/postgres)    Redis  %s
Place an order and get its tracking link (copy and paste):
  %s
Ctrl-C stops everything; data stays in the dev folder.

`, query, env("QUERY_ORDER_API_URL"), servers["KAFKA_BROKERS"], servers["POSTGRES_PORT"], servers["REDIS_ADDR"], tryIt(env("QUERY_ORDER_API_URL"), query))
}

// tryIt is a shell line that places an order with the built-in catalog's first item and prints
// the tracking-page link for it.
func tryIt(orderAPI, page string) string {
	body := `{"customerId":"cust-1","currency":"EUR","items":[{"itemId":"SKU-001","quantity":2,"unitPrice":19.99}]}`
	return fmt.Sprintf(`curl -s %s/api/orders -H 'Content-Type: application/json' -d '%s' | sed -E 's|.*"orderId":"([^"]+)".*|%s/?order=\1|'`,
		orderAPI, body, page)
}
