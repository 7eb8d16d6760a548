package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/internal/verify"
)

// TestShortLoadThenVerify is CI's performance regression check: 20 orders/s for 15 s of the
// loadgen's default mix through the five services, then every invariant. The numbers are printed,
// not asserted; correctness (all orders terminal, verify passing) is asserted.
func TestShortLoadThenVerify(t *testing.T) {
	e2e(t)
	ctx := testkit.Context(t, 5*time.Minute)
	// The loadgen orders the built-in catalog (SKU-xxx, LOW-xxx), so this run uses it, not the e2e one.
	sys := start(t, false, "INVENTORY_CATALOG_FILE=")
	res, err := loadgen.Run(ctx, loadgen.Config{
		OrderURL: "http://" + sys.Addrs["ORDER"], QueryURL: "http://" + sys.Addrs["QUERY"], Brokers: []string{"127.0.0.1:9092"},
		Rate: 20, Duration: 15 * time.Second, MaxInFlight: 256, ItemsMin: 1, ItemsMax: 3, RejectShare: 0.1, DeclineShare: 0.1,
		Customers: 50, Seed: 7, Drain: 60 * time.Second, ProgressEvery: 5 * time.Second,
	}, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 300 || res.Unfinished != 0 || res.Unexpected != 0 || len(res.Errors) != 0 {
		t.Fatalf("load run: accepted %d unfinished %d unexpected %d errors %v", res.Accepted, res.Unfinished, res.Unexpected, res.Errors)
	}
	env := func(k string) string {
		if v, ok := sys.Env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	cfg, err := verify.LoadConfig([]string{"-quiesce-timeout", "90s"}, env, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Verify(ctx, cfg, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.Print(&out)
	t.Log("\n" + out.String())
	if !rep.OK() {
		t.Fatal("verify failed after the load run")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
