package chaos

import (
	"time"

	"testing"

	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestCancellationsAndDeadlinesWithPaymentKilled (12): 30 orders/s of which 10 % are cancelled at
// a random moment within 3 s of placement; payment-service is killed (-9) for 15 s, longer than the
// 8 s order deadline, so the orders reserved meanwhile expire (DEADLINE_EXCEEDED) while the
// customers' cancellations keep arriving. Every order must end, expired orders must not be
// charged net, and every invariant (the cancellation ones included) must hold.
func TestCancellationsAndDeadlinesWithPaymentKilled(t *testing.T) {
	chaos(t, false)
	sys := testkit.StartSystem(t, false, append(env, "ORDER_DEADLINE=8s")...)
	ctx := testkit.Context(t, 10*time.Minute)
	result := load(t, sys, 30, 50*time.Second, func(c *loadgen.Config) { c.CancelShare, c.CancelWithin = 0.1, 3*time.Second })
	wait(ctx, 10*time.Second)
	p := sys.Procs["PAYMENT"]
	t.Log("kill -9 payment-service")
	p.Kill()
	began := time.Now()
	wait(ctx, 15*time.Second)
	p.Restart(t)
	down := time.Since(began)
	res, r, rep := afterFault(t, sys, result, "expired")
	expired := metric(t, sys, "ORDER", "order_deadline_expired_total")
	t.Logf("cancellations %v, expired %d (sweeper: %v), cancel → view %+v", res.Cancels, res.Expired, expired, res.CancelLatency)
	if res.Cancels["202"] == 0 {
		t.Errorf("no cancellation was accepted: %v", res.Cancels)
	}
	if res.Expired == 0 || expired == 0 {
		t.Errorf("no order expired while payment-service was down (loadgen %d, sweeper %v): the deadline was not exercised", res.Expired, expired)
	}
	record(row{"12 cancellations (10 %) and deadline expiries, payment-service killed", sent(res),
		"payment-service down " + secs(down) + ", deadline 8 s: " + itoa(res.Cancels["202"]) + " cancelled, " + itoa(res.Expired) + " expired",
		secs(r), invariants(rep), "empty"})
}
