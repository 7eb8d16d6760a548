package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testkit"
)

// syncBuffer collects the services' logs, written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// tail returns the last n bytes written.
func (w *syncBuffer) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.b.String()
	return s[max(0, len(s)-n):]
}

func TestUnknownCommandAndBadConfig(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"nope"}, func(string) string { return "" }, &out, &out); !errors.Is(err, ErrUsage) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out.String(), "order-service") {
		t.Fatalf("usage does not list services: %s", out.String())
	}
	env := map[string]string{"POSTGRES_PORT": "abc", "SHUTDOWN_TIMEOUT": "soon", "KAFKA_COMPRESSION": "brotli",
		"KAFKA_FETCH_MIN_BYTES": "0", "KAFKA_FETCH_MAX_WAIT": "1m"}
	err := Run(context.Background(), []string{"order-service"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, name := range []string{"POSTGRES_PORT", "SHUTDOWN_TIMEOUT", "KAFKA_COMPRESSION", "KAFKA_FETCH_MIN_BYTES", "KAFKA_FETCH_MAX_WAIT"} {
		if !strings.Contains(err.Error(), name) {
			t.Fatalf("bad %s not reported: %v", name, err)
		}
	}
}

// TestServiceConfigPrintsEffectiveSettings: `orderflow <service> config` lists what the service
// would run with, secrets masked, and reports an invalid value as start-up would.
func TestServiceConfigPrintsEffectiveSettings(t *testing.T) {
	env := map[string]string{"ADMIN_TOKEN": "very-secret", "QUERY_SSE_MAX_STREAMS": "77"}
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"query-api", "config"}, func(k string) string { return env[k] }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"ADMIN_TOKEN=(set)\n", "QUERY_SSE_MAX_STREAMS=77\n", "QUERY_HTTP_ADDR=127.0.0.1:8080\n", "LOG_FORMAT=auto\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("config output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "very-secret") {
		t.Error("a secret's value was printed")
	}
	env["LOG_FORMAT"] = "xml"
	if err := Run(context.Background(), []string{"query-api", "config"}, func(k string) string { return env[k] }, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "LOG_FORMAT") {
		t.Errorf("an invalid value: %v", err)
	}
	if err := Run(context.Background(), []string{"query-api", "confi"}, func(k string) string { return env[k] }, io.Discard, io.Discard); !errors.Is(err, ErrUsage) {
		t.Errorf("a misspelt sub-command: %v", err)
	}
}

// TestAllServesHealthWithRealDependencies starts every service in one process against the real
// servers and checks each reports its dependencies UP, then stops cleanly. Its databases, groups and
// keyspace are its own: with the defaults it would consume the shared groups' backlogs into the
// databases that dev runs and benchmarks use.
func TestAllServesHealthWithRealDependencies(t *testing.T) {
	testkit.Integration(t)
	addrs := map[string]string{}
	env := map[string]string{}
	for _, kv := range testkit.Isolate(t).Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for _, p := range []string{"ORDER", "INVENTORY", "PAYMENT", "DELIVERY", "QUERY"} {
		addrs[p] = testkit.FreeAddr(t)
		env[p+"_HTTP_ADDR"] = addrs[p]
	}
	// A service holds its port while it waits for its dependencies: bound each request.
	probe := &http.Client{Timeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"all"}, func(k string) string { return env[k] }, &logs, &logs)
	}()
	// A service that fails to start stops the whole process: report why instead of waiting.
	stopped := func() {
		select {
		case err := <-done:
			t.Fatalf("all stopped before every service was UP: %v\n%s", err, logs.tail(4000))
		default:
		}
	}
	want := map[string][]string{
		"ORDER": {"postgres", "kafka"}, "INVENTORY": {"postgres", "kafka"}, "PAYMENT": {"postgres", "kafka", "redis"},
		"DELIVERY": {"postgres", "kafka"}, "QUERY": {"cassandra", "kafka"},
	}
	for p, deps := range want {
		var rep struct {
			Status     string
			Components map[string]struct{ Status string }
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			rep.Status = ""
			resp, err := probe.Get(fmt.Sprintf("http://%s/health", addrs[p]))
			if err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&rep)
				resp.Body.Close()
			}
			if rep.Status == "UP" || time.Now().After(deadline) {
				break
			}
			stopped()
			time.Sleep(200 * time.Millisecond)
		}
		if rep.Status != "UP" {
			t.Fatalf("%s health %+v\n%s", p, rep, logs.tail(4000))
		}
		for _, d := range deps {
			if rep.Components[d].Status != "UP" {
				t.Errorf("%s: %s is %q", p, d, rep.Components[d].Status)
			}
		}
		resp, err := probe.Get(fmt.Sprintf("http://%s/healthz", addrs[p]))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s healthz: %v", p, err)
		}
		resp.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("all returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("all did not stop within 30s")
	}
}

// TestConfigurationDocIsCurrent keeps docs/configuration.md equal to what the code reads.
func TestConfigurationDocIsCurrent(t *testing.T) {
	var b bytes.Buffer
	writeConfigDocs(&b)
	path := "../../docs/configuration.md"
	if os.Getenv("UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, b.Bytes()) {
		t.Fatal("docs/configuration.md is stale: run `UPDATE_DOCS=1 go test ./internal/cli -run ConfigurationDoc`")
	}
	for _, name := range []string{"POSTGRES_PASSWORD", "ORDER_HTTP_ADDR", "PAYMENT_LOCK_TTL", "DELIVERY_TIME_SPEED", "QUERY_CONSUMER_GROUP"} {
		if !strings.Contains(b.String(), "`"+name+"`") {
			t.Errorf("%s is not documented", name)
		}
	}
}

func TestVariablesOfEachService(t *testing.T) {
	for name := range Services {
		vars, ok := Variables(name)
		// Each engine's settings only where it is used: the credentials a deployment must give.
		usesPostgres, usesCassandra := name != "query-api", name == "query-api"
		if !ok || !vars["KAFKA_BROKERS"] || vars["POSTGRES_PASSWORD_FILE"] != usesPostgres || vars["CASSANDRA_PASSWORD"] != usesCassandra ||
			vars["REDIS_PASSWORD"] != (name == "payment-service") {
			t.Errorf("%s: %v %v", name, ok, vars)
		}
	}
	if v, _ := Variables("payment-service"); !v["PAYMENT_LOCK_TTL"] || v["DELIVERY_DRIVERS"] {
		t.Error("payment-service's variables are wrong")
	}
	if _, ok := Variables("nope"); ok {
		t.Error("unknown service has variables")
	}
}
