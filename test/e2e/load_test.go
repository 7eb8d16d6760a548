package e2e

import (
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/test/harness"
)

// TestShortLoadThenVerify is CI's performance regression check: 20 orders/s for 15 s of the
// loadgen's default mix through the five services, then every invariant. The numbers are printed,
// not asserted; correctness (all orders terminal, verify passing) is asserted.
func TestShortLoadThenVerify(t *testing.T) {
	e2e(t)
	ctx := testkit.Context(t, 5*time.Minute)
	// The loadgen orders the built-in catalog (SKU-xxx, LOW-xxx), so this run uses it, not the e2e one.
	sys := start(t, false, "INVENTORY_CATALOG_FILE=")
	res := harness.Load(ctx, t, sys, 20, 15*time.Second, 7)
	if res.Accepted != 300 || res.Unfinished != 0 || res.Unexpected != 0 || len(res.Errors) != 0 {
		t.Fatalf("load run: accepted %d unfinished %d unexpected %d errors %v", res.Accepted, res.Unfinished, res.Unexpected, res.Errors)
	}
	harness.Verify(t, sys)
}
