package loadgen

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

func envelopeAt(t *testing.T, occurred, produced time.Time) []byte {
	t.Helper()
	b, err := json.Marshal(event.Envelope{OccurredAt: occurred, ProducedAt: produced})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The stages of a completed order chain without gaps, so they add up to its end-to-end latency;
// a rejected order stops after inventory; an order whose path was not fully seen is counted apart.
func TestStagesSplitTheEndToEndLatency(t *testing.T) {
	h := newHopClock()
	t0 := time.Now().Add(-time.Minute)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	h.observe("ok", event.OrderCreated, envelopeAt(t, ms(3), ms(10)), false)
	h.observe("ok", event.InventoryReserved, envelopeAt(t, ms(15), ms(30)), false)
	h.observe("ok", event.InventoryReserved, envelopeAt(t, ms(99), ms(99)), false) // redelivery: first stamps kept
	h.observe("ok", event.PaymentAuthorized, envelopeAt(t, ms(36), ms(40)), false)
	h.observe("ok", event.DeliveryAssigned, envelopeAt(t, ms(50), ms(60)), true)
	h.observe("rejected", event.InventoryRejected, envelopeAt(t, ms(20), ms(25)), true)
	h.observe("rejected", event.OrderCreated, envelopeAt(t, ms(4), ms(8)), false) // topics interleave
	h.observe("no-created", event.PaymentFailed, envelopeAt(t, ms(20), ms(25)), true)
	h.observe("garbage", event.OrderCreated, []byte("{"), false)

	d, ok := h.path("ok", t0, h.trails["ok"].terminal.Add(7*time.Millisecond))
	if !ok {
		t.Fatal("full path not found")
	}
	want := []time.Duration{3, 7, 5, 15, 6, 4, 10, 10}
	var sum time.Duration
	for i, w := range want {
		if d[i] != w*time.Millisecond {
			t.Fatalf("stage %q = %v, want %v ms (all %v)", stageNames[i], d[i], w, d)
		}
	}
	for _, v := range d {
		sum += v
	}
	confirmed := h.trails["ok"].terminal.Add(7 * time.Millisecond)
	if sum != confirmed.Sub(t0) || d[len(d)-1] != 7*time.Millisecond {
		t.Fatalf("stages add up to %v, end-to-end %v", sum, confirmed.Sub(t0))
	}

	done := map[string]*tracked{
		"ok":         {sentAt: t0, confirmedAt: confirmed},
		"rejected":   {sentAt: t0, confirmedAt: time.Now()},
		"no-created": {sentAt: t0, confirmedAt: time.Now()},
		"unseen":     {sentAt: t0, confirmedAt: time.Now()},
	}
	stages, missing := h.stages(done)
	if missing != 2 {
		t.Fatalf("missing = %d, want 2 (no-created, unseen)", missing)
	}
	counts := map[string]int{}
	for _, s := range stages {
		counts[s.Name] = s.Latency.Count
	}
	if counts[stageNames[0]] != 2 || counts[stageNames[3]] != 2 || counts[stageNames[4]] != 1 || counts[stageNames[9]] != 2 {
		t.Fatalf("per-stage counts %v", counts)
	}
	if inv := stages[2].Latency; inv.P50 != 5 || inv.Max != 12 { // ok: 15-10 ms, rejected: 20-8 ms
		t.Fatalf("inventory stage %+v", inv)
	}

	h.forget(time.Now().Add(time.Second), func(id string) bool { return id == "ok" })
	if len(h.trails) != 1 || h.trails["ok"] == nil {
		t.Fatalf("forget kept %v", h.trails)
	}
}
