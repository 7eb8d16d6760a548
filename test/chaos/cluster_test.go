package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/testkit"
)

// The cluster scenarios run the services against scripts/infra up --cluster (three Kafka brokers
// with replication 3 and min.insync.replicas 2, three Cassandra nodes with replication 3 at
// LOCAL_QUORUM), started by the first of them if it is not running.

// clusterStarted is set when a scenario here started the cluster: TestMain stops it again, so the
// six JVMs do not run beside the test packages that follow.
var clusterStarted struct {
	once sync.Once
	yes  bool
}

const infraScript = "../../scripts/infra"

// stopClusterIfStarted stops the cluster if this package started it.
func stopClusterIfStarted() {
	if clusterStarted.yes {
		if out, err := exec.Command(infraScript, "down", "--cluster").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "scripts/infra down --cluster: %v\n%s", err, out)
		}
	}
}

// clusterRun starts a system on the cluster under 30 orders/s for d and returns once the load has
// run for 10 s, with a context for the rest of the scenario.
func clusterRun(t *testing.T, d time.Duration) (*testkit.System, func() loadgen.Result, context.Context) {
	t.Helper()
	clusterStarted.once.Do(func() { clusterStarted.yes = exec.Command(infraScript, "status", "--cluster").Run() != nil })
	servers := testkit.Cluster(t)
	sys := testkit.StartSystemOn(t, servers, env...)
	result := load(t, sys, 30, d)
	ctx := testkit.Context(t, 10*time.Minute)
	wait(ctx, 10*time.Second)
	return sys, result, ctx
}

// clusterRow records a cluster scenario: its recovery and the worst end-to-end latency of the run.
func clusterRow(t *testing.T, sys *testkit.System, result func() loadgen.Result, name, window string, allowed ...string) {
	t.Helper()
	res, r, rep := afterFault(t, sys, result, allowed...)
	record(row{name, sent(res), window, fmt.Sprintf("%s (worst end-to-end %s)", secs(r), secs(time.Duration(res.EndToEnd.Max*float64(time.Millisecond)))),
		invariants(rep), "empty"})
}

// kafkaNode stops, starts or kills (SIGKILL) broker n of the cluster; start returns once the
// cluster lists three brokers again.
func kafkaNode(t *testing.T, action string, n int32) {
	t.Helper()
	testkit.Infra(t, action, fmt.Sprintf("kafka-%d", n))
	if action != "start" {
		t.Cleanup(func() { testkit.Infra(t, "start", fmt.Sprintf("kafka-%d", n)) }) // never leave a node down
	}
}

func metadata(t *testing.T, sys *testkit.System) kadm.Metadata {
	t.Helper()
	ctx := testkit.Context(t, 20*time.Second)
	m, err := kadm.NewClient(sys.Servers.Client(t)).Metadata(ctx, event.MainTopics()...)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	return m
}

// fullyReplicated reports whether every partition of the saga topics has all three replicas in sync.
func fullyReplicated(t *testing.T, sys *testkit.System) bool {
	ok := true
	for _, td := range metadata(t, sys).Topics {
		for _, p := range td.Partitions {
			ok = ok && p.Err == nil && len(p.ISR) == 3
		}
	}
	return ok
}

// TestClusterBrokerKilled (13): one of the three brokers SIGKILLed for 20 s under load. Producers
// use acks=all with min.insync.replicas 2, so nothing acknowledged can be lost with one broker gone.
func TestClusterBrokerKilled(t *testing.T) {
	chaos(t, false)
	sys, result, ctx := clusterRun(t, 60*time.Second)
	began := time.Now()
	kafkaNode(t, "kill", 2)
	testkit.Eventually(t, 30*time.Second, "the cluster to list two brokers", func() bool { return len(metadata(t, sys).Brokers) == 2 })
	wait(ctx, 20*time.Second-time.Since(began))
	kafkaNode(t, "start", 2)
	down := time.Since(began)
	testkit.Eventually(t, 60*time.Second, "every partition back to three in-sync replicas", func() bool { return fullyReplicated(t, sys) })
	clusterRow(t, sys, result, "13 cluster: one of 3 brokers killed", "kafka-2 SIGKILL, down "+secs(down))
}

// TestClusterLeaderKilled (14): the broker leading partition 0 of the payment topic (read by
// three services, written by one) SIGKILLed; leadership must move to an in-sync follower.
func TestClusterLeaderKilled(t *testing.T) {
	chaos(t, true)
	sys, result, ctx := clusterRun(t, 60*time.Second)
	leader := func() int32 {
		p := metadata(t, sys).Topics[event.TopicPayments].Partitions[0]
		if p.Err != nil {
			return -1
		}
		return p.Leader
	}
	old := leader()
	if old < 1 {
		t.Fatalf("partition 0 of %s has no leader", event.TopicPayments)
	}
	began := time.Now()
	kafkaNode(t, "kill", old)
	testkit.Eventually(t, 30*time.Second, "leadership of the partition to move", func() bool { l := leader(); return l > 0 && l != old })
	moved := time.Since(began)
	t.Logf("partition 0 of %s: leader %d killed, broker %d leads after %s", event.TopicPayments, old, leader(), moved)
	wait(ctx, 20*time.Second-time.Since(began))
	kafkaNode(t, "start", old)
	down := time.Since(began)
	testkit.Eventually(t, 60*time.Second, "every partition back to three in-sync replicas", func() bool { return fullyReplicated(t, sys) })
	clusterRow(t, sys, result, "14 cluster: a saga partition's leader killed",
		fmt.Sprintf("leader of %s/0 (kafka-%d) SIGKILL, leadership moved in %s, down %s", event.TopicPayments, old, secs(moved), secs(down)))
}

// TestClusterRollingRestart (15): each broker in turn stopped (controlled shutdown, SIGTERM) and
// started, the next one only when every partition has three in-sync replicas again — the way an
// operator (or Strimzi) rolls a cluster.
func TestClusterRollingRestart(t *testing.T) {
	chaos(t, false)
	sys, result, _ := clusterRun(t, 90*time.Second)
	began := time.Now()
	for n := int32(1); n <= 3; n++ {
		kafkaNode(t, "stop", n)
		kafkaNode(t, "start", n)
		testkit.Eventually(t, 60*time.Second, "every partition back to three in-sync replicas", func() bool { return fullyReplicated(t, sys) })
		t.Logf("kafka-%d restarted, in sync after %s", n, time.Since(began))
	}
	clusterRow(t, sys, result, "15 cluster: rolling restart of the 3 brokers", "kafka-1, -2, -3 restarted in turn in "+secs(time.Since(began)))
}

// hintFiles counts the hint files Cassandra node n holds for nodes that were down.
func hintFiles(t *testing.T, n int) int {
	t.Helper()
	dir := filepath.Join("..", "..", ".cache", "native", "cluster", fmt.Sprintf("cassandra-%d", n), "data", "hints")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	c := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".hints") {
			c++
		}
	}
	return c
}

// TestClusterCassandraNodeKilled (16): one of the three Cassandra nodes SIGKILLed for 30 s. Writes
// and reads at LOCAL_QUORUM go on with two replicas; the live nodes keep hints for the dead one and
// hand them off when it returns.
func TestClusterCassandraNodeKilled(t *testing.T) {
	chaos(t, true)
	sys, result, ctx := clusterRun(t, 60*time.Second)
	testkit.Eventually(t, 60*time.Second, "no hints left from earlier runs", func() bool { return hintFiles(t, 1)+hintFiles(t, 2) == 0 })
	began := time.Now()
	testkit.Infra(t, "kill", "cassandra-3")
	t.Cleanup(func() { testkit.Infra(t, "start", "cassandra-3") })
	testkit.Eventually(t, 30*time.Second, "hints for the dead node on the live ones", func() bool { return hintFiles(t, 1)+hintFiles(t, 2) > 0 })
	wait(ctx, 30*time.Second-time.Since(began))
	testkit.Infra(t, "start", "cassandra-3")
	down := time.Since(began)
	testkit.Eventually(t, 3*time.Minute, "the hints handed off to the returned node", func() bool { return hintFiles(t, 1)+hintFiles(t, 2) == 0 })
	clusterRow(t, sys, result, "16 cluster: one of 3 Cassandra nodes killed",
		"cassandra-3 SIGKILL, down "+secs(down)+", hints kept and handed off")
}

// TestClusterTwoCassandraNodesDown (17): two of three nodes down: no quorum, so every write and read
// of the read model fails. The projection must retry without dead-lettering (the errors are
// counted and logged), reads answer 503, and the view catches up when the nodes return.
func TestClusterTwoCassandraNodesDown(t *testing.T) {
	chaos(t, false)
	sys, result, ctx := clusterRun(t, 60*time.Second)
	known := postOrder(ctx, sys, "", `{"customerId":"known","currency":"EUR","items":[{"itemId":"SKU-001","quantity":1,"unitPrice":"1.00"}]}`)
	testkit.Eventually(t, 30*time.Second, "the known order in the view", func() bool { return viewStatus(ctx, sys, known) != "" })
	retriesBefore := metric(t, sys, "QUERY", "kafka_consumer_retries_total")
	began := time.Now()
	for _, n := range []string{"cassandra-2", "cassandra-3"} {
		testkit.Infra(t, "kill", n)
		t.Cleanup(func() { testkit.Infra(t, "start", n) })
	}
	testkit.Eventually(t, 30*time.Second, "reads of an existing order to answer 503", func() bool { return getStatus(ctx, sys, known) == http.StatusServiceUnavailable })
	testkit.Eventually(t, 30*time.Second, "the projection to retry failed writes", func() bool {
		return metric(t, sys, "QUERY", "kafka_consumer_retries_total") > retriesBefore
	})
	wait(ctx, 20*time.Second-time.Since(began))
	// Both return together: started one after the other, the first would restore quorum alone.
	testkit.Infra(t, "start", "cassandra-2", "cassandra-3")
	down := time.Since(began)
	retries := metric(t, sys, "QUERY", "kafka_consumer_retries_total") - retriesBefore
	clusterRow(t, sys, result, "17 cluster: two of 3 Cassandra nodes down",
		fmt.Sprintf("cassandra-2 and -3 SIGKILL, down %s; reads 503, %.0f projection retries", secs(down), retries))
	if s := viewStatus(ctx, sys, known); !slices.Contains([]string{"DELIVERY_ASSIGNED", "DELIVERED"}, s) {
		t.Errorf("known order %s is %q in the view after recovery", known, s)
	}
}

// getStatus returns the HTTP status of GET /api/orders/{id} on query-api (0 on a transport error).
func getStatus(ctx context.Context, sys *testkit.System, id string) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sys.Addrs["QUERY"]+"/api/orders/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
