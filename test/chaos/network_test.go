package chaos

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testkit"
)

// TestNetworkFaults (8): payment-service runs in a network namespace the test creates; its
// Postgres, Redis and Kafka connections cross the namespace through forwarders the test runs.
// Faults, one dependency at a time: 200 ms ± 50 ms delay on Redis for 15 s (added in the
// forwarder: this kernel has no netem qdisc, tc answers "Specified qdisc kind is unknown"), then
// 10 % packet loss on Kafka for 15 s and a 15 s partition from Postgres, both with iptables rules
// inside the namespace (never on the machine's own interfaces).
func TestNetworkFaults(t *testing.T) {
	chaos(t, false)
	if why := testkit.NetnsUnavailable(); why != "" {
		t.Fatal(why)
	}
	sys := testkit.StartSystem(t, false, env...)
	ns := testkit.NewNetns(t)
	ns.ForwardInto(t, "127.0.0.1:5432", "127.0.0.1:6379", "127.0.0.1:9092")
	// The system's payment-service is replaced by one inside the namespace (same group, same database).
	sys.Procs["PAYMENT"].Stop()
	_, port, _ := net.SplitHostPort(testkit.FreeAddr(t))
	inside := "127.0.0.1:" + port
	envs := []string{"PAYMENT_HTTP_ADDR=" + inside}
	for k, v := range sys.Env {
		if k != "PAYMENT_HTTP_ADDR" {
			envs = append(envs, k+"="+v)
		}
	}
	payment := ns.ForwardOut(t, inside)
	testkit.StartWith(t, ns.Prefix(), "payment-service", payment, envs...)

	ctx := testkit.Context(t, 10*time.Minute)
	result := load(t, sys, 30, 75*time.Second)
	both := func(action, port string, rule ...string) {
		for _, dir := range []string{"--dport", "--sport"} {
			ns.Exec(t, append([]string{"iptables", action, "INPUT", "-i", "lo", "-p", "tcp", dir, port}, rule...)...)
		}
	}
	wait(ctx, 5*time.Second)
	t.Log("200 ms ± 50 ms delay on payment-service ↔ Redis")
	ns.Delay("127.0.0.1:6379", 200*time.Millisecond, 50*time.Millisecond)
	wait(ctx, 15*time.Second)
	ns.Delay("127.0.0.1:6379", 0, 0)
	wait(ctx, 3*time.Second)
	loss := []string{"-m", "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP"}
	t.Log("10 % loss on payment-service ↔ Kafka")
	both("-A", "9092", loss...)
	wait(ctx, 15*time.Second)
	both("-D", "9092", loss...)
	wait(ctx, 3*time.Second)
	t.Log("payment-service partitioned from Postgres")
	began := time.Now()
	both("-A", "5432", "-j", "DROP")
	wait(ctx, 15*time.Second)
	both("-D", "5432", "-j", "DROP")
	partition := time.Since(began)
	res, r, rep := afterFault(t, sys, result)
	// Evidence that the delay bit: payments that took longer than 250 ms (each needs several
	// Redis round trips; undisturbed they take a few milliseconds).
	slow := metricAt(t, payment, "payment_processing_duration_seconds_count") -
		metricAt(t, payment, `payment_processing_duration_seconds_bucket{application="payment-service",le="0.25"}`)
	degraded := metricAt(t, payment, "payment_redis_degraded_total")
	t.Logf("payment-service: %v payments slower than 250 ms, %v Redis calls degraded to the database layer", slow, degraded)
	if slow == 0 {
		t.Error("the Redis delay had no visible effect (no payment slower than 250 ms)")
	}
	record(row{"8 network faults (payment-service in its own namespace)", sent(res),
		"Redis 200 ± 50 ms delay 15 s (forwarder: no netem in this kernel), Kafka 10 % loss 15 s, then partition from Postgres " + secs(partition) + " (iptables)",
		secs(r), invariants(rep), fmt.Sprintf("empty; %v payments slower than 250 ms during the delay", slow)})
}
