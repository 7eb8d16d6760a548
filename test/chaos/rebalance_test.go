package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testkit"
)

// TestPausedPayment (2): payment-service frozen (SIGSTOP) for 45 s, longer than the session
// timeout and the 40 s lock TTL, while a second instance runs; then SIGCONT. The second instance
// takes the partitions once the frozen one's locks expire; the frozen one wakes up mid-event and
// may try to charge again: the database layer must hold.
func TestPausedPayment(t *testing.T) {
	chaos(t, false)
	sys := testkit.StartSystem(t, false, append(env, "PAYMENT_LOCK_TTL=40s")...)
	second := sys.AddInstance(t, "PAYMENT")
	ctx := testkit.Context(t, 10*time.Minute)
	result := load(t, sys, 30, 75*time.Second)
	wait(ctx, 10*time.Second)
	frozen := sys.Procs["PAYMENT"]
	frozen.Pause()
	wait(ctx, 45*time.Second)
	frozen.Resume()
	res, r, rep := afterFault(t, sys, result)
	dups := metric(t, sys, "PAYMENT", "payment_duplicate_total") + metricAt(t, second.Addr, "payment_duplicate_total")
	record(row{"2 payment frozen (SIGSTOP) beside a second instance", sent(res), "45 s frozen, lock TTL 40 s",
		secs(r), invariants(rep), fmt.Sprintf("empty; %v duplicates recognised", dups)})
}

// TestScaleOutAndIn (3): each consumer service scaled from 1 to 2 to 1 instances under load; every
// change is a consumer-group rebalance with partitions moving while records are in flight.
func TestScaleOutAndIn(t *testing.T) {
	chaos(t, false)
	sys := testkit.StartSystem(t, false, env...)
	ctx := testkit.Context(t, 10*time.Minute)
	result := load(t, sys, 30, 60*time.Second)
	for _, p := range []string{"INVENTORY", "PAYMENT", "DELIVERY", "QUERY"} {
		wait(ctx, 3*time.Second)
		t.Logf("scale %s to 2", p)
		extra := sys.AddInstance(t, p)
		wait(ctx, 8*time.Second)
		t.Logf("scale %s back to 1", p)
		extra.Stop()
	}
	res, r, rep := afterFault(t, sys, result)
	record(row{"3 scale 1 → 2 → 1 per consumer service", sent(res), "4 × (8 s at 2 instances)", secs(r), invariants(rep), "empty"})
}
