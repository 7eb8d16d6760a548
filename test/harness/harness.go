// Package harness drives a running testkit.System the way an operator would: load from
// orderflow loadgen, then every invariant of orderflow verify. Shared by the e2e and chaos suites.
package harness

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/internal/verify"
)

// Writer sends output lines to the test log.
type Writer struct{ T testing.TB }

func (w Writer) Write(p []byte) (int, error) {
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Load runs the load generator against sys at rate for d with the default order mix (5 % stock
// rejections, 5 % declines) and seed, changed by opts, and returns its result.
func Load(ctx context.Context, t testing.TB, sys *testkit.System, rate float64, d time.Duration, seed uint64, opts ...func(*loadgen.Config)) loadgen.Result {
	t.Helper()
	cfg := loadgen.Config{
		OrderURL: "http://" + sys.Addrs["ORDER"], QueryURL: "http://" + sys.Addrs["QUERY"], Brokers: sys.Servers.Kafka.Brokers,
		Rate: rate, Duration: d, MaxInFlight: 512, ItemsMin: 1, ItemsMax: 3, RejectShare: 0.05, DeclineShare: 0.05,
		Customers: 100, Seed: seed, Drain: 3 * time.Minute, ProgressEvery: 10 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	res, err := loadgen.Run(ctx, cfg, Writer{t})
	if err != nil {
		t.Errorf("loadgen: %v", err)
	}
	return res
}

// Verify runs every invariant against sys's stores (read with the services' own environment) and
// fails the test on any violation.
func Verify(t testing.TB, sys *testkit.System) verify.Report {
	t.Helper()
	return VerifyAllowing(t, sys, 0)
}

// VerifyAllowing is Verify for a run that dead-lettered allowDLQ records on purpose.
func VerifyAllowing(t testing.TB, sys *testkit.System, allowDLQ int64) verify.Report {
	t.Helper()
	getenv := func(k string) string {
		if v, ok := sys.Env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	cfg, err := verify.LoadConfig([]string{"-quiesce-timeout", "3m", "-allow-dlq", strconv.FormatInt(allowDLQ, 10)}, getenv, Writer{t})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Verify(testkit.Context(t, 5*time.Minute), cfg, Writer{t})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Print(&b)
	t.Log("\n" + b.String())
	if !rep.OK() {
		t.Fatal("invariants violated")
	}
	return rep
}
