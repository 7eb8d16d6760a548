package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

// Hop timing splits each completed order's end-to-end time along its critical path, from what the
// services stamp into every envelope: occurredAt when a handler creates the event (inside its
// transaction) and producedAt when the outbox relay publishes it. The stages chain without gaps,
// so for one order they add up to its end-to-end latency:
//
//	POST due → order.created occurred → produced → inventory.* occurred → produced →
//	payment.* occurred → produced → delivery.assigned occurred → produced →
//	terminal event fetched by the load generator → view shows the terminal status
//
// A "handler" stage covers Kafka delivery, the consumer's queue and the handler up to the event's
// creation; a "relay" stage covers the commit, the relay's wake-up and read, and the stamping just
// before the produce request (whose round trip lands in the next stage).
type hopClock struct {
	mu     sync.Mutex
	trails map[string]*trail
}

type trail struct {
	first    time.Time // when the watcher first saw the order (to forget other clients' orders)
	stamps   map[event.Type]stamp
	terminal time.Time // when the watcher saw the terminal event
}

type stamp struct{ occurred, produced time.Time }

// notOnPath marks the stages a rejected or declined order never reaches.
const notOnPath = time.Duration(math.MinInt64)

// Stage is one step of the critical path with its latency distribution.
type Stage struct {
	Name    string  `json:"name"`
	Latency Summary `json:"latency"`
}

// stageNames in path order; a rejected or declined order has no later service stages.
var stageNames = []string{
	"order-service: POST due → order.created",
	"relay: order.created",
	"inventory-service: → inventory.*",
	"relay: inventory.*",
	"payment-service: → payment.*",
	"relay: payment.*",
	"delivery-service: → delivery.assigned",
	"relay: delivery.assigned",
	"kafka: terminal event → load generator",
	"query-api: → view shows it",
}

func newHopClock() *hopClock { return &hopClock{trails: map[string]*trail{}} }

// observe records one event of the path seen by the watcher; terminal marks the order's last one.
func (h *hopClock) observe(orderID string, typ event.Type, value []byte, terminal bool) {
	var e struct {
		OccurredAt time.Time `json:"occurredAt"`
		ProducedAt time.Time `json:"producedAt"`
	}
	if json.Unmarshal(value, &e) != nil {
		return // the services' consumers dead-letter such a record; the run's other counts show it
	}
	now := time.Now().Round(0) // wall clock, like the stamps of the other processes
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.trails[orderID]
	if t == nil {
		t = &trail{first: now, stamps: map[event.Type]stamp{}}
		h.trails[orderID] = t
	}
	if _, dup := t.stamps[typ]; !dup { // a redelivered event keeps its first stamps
		t.stamps[typ] = stamp{e.OccurredAt, e.ProducedAt}
	}
	if terminal && t.terminal.IsZero() {
		t.terminal = now
	}
}

// forget drops trails of orders first seen before cutoff that keep is false for (orders of other
// clients on the shared topics).
func (h *hopClock) forget(cutoff time.Time, keep func(id string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, t := range h.trails {
		if t.first.Before(cutoff) && !keep(id) {
			delete(h.trails, id)
		}
	}
}

// path returns the stage durations of one completed order (index into stageNames, duration), or
// false when an event of its path was not seen.
func (h *hopClock) path(orderID string, sentAt, confirmedAt time.Time) ([]time.Duration, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.trails[orderID]
	if t == nil || t.terminal.IsZero() {
		return nil, false
	}
	steps := [][]event.Type{
		{event.OrderCreated},
		{event.InventoryReserved, event.InventoryRejected},
		{event.PaymentAuthorized, event.PaymentFailed},
		{event.DeliveryAssigned},
	}
	d := make([]time.Duration, len(stageNames))
	for i := range d {
		d[i] = notOnPath
	}
	// Wall-clock throughout (Round(0) drops the monotonic reading), so the stages add up exactly.
	sentAt, confirmedAt = sentAt.Round(0), confirmedAt.Round(0)
	prev, last := sentAt, 0
	for i, types := range steps {
		var s stamp
		var ok bool
		for _, typ := range types {
			if s, ok = t.stamps[typ]; ok {
				break
			}
		}
		if !ok {
			break
		}
		if s.occurred.IsZero() || s.produced.IsZero() {
			return nil, false
		}
		d[2*i], d[2*i+1] = s.occurred.Sub(prev), s.produced.Sub(s.occurred)
		prev, last = s.produced, 2*i+2
	}
	if last == 0 {
		return nil, false
	}
	d[len(d)-2], d[len(d)-1] = t.terminal.Sub(prev), confirmedAt.Sub(t.terminal)
	return d, true
}

// stages summarises the paths of the given completed orders; missing counts orders whose path was
// not fully seen.
func (h *hopClock) stages(done map[string]*tracked) (out []Stage, missing int) {
	recs := make([]Recorder, len(stageNames))
	for id, o := range done {
		d, ok := h.path(id, o.sentAt, o.confirmedAt)
		if !ok {
			missing++
			continue
		}
		for i, v := range d {
			if v != notOnPath {
				recs[i].Add(v)
			}
		}
	}
	for i, n := range stageNames {
		out = append(out, Stage{Name: n, Latency: recs[i].Summary()})
	}
	return out, missing
}

func printStages(w io.Writer, stages []Stage, missing int) {
	if len(stages) == 0 {
		return
	}
	fmt.Fprintf(w, "where the end-to-end time goes (per completed order, from the events' occurredAt/producedAt; %d without a full path):\n", missing)
	for _, s := range stages {
		l := s.Latency
		fmt.Fprintf(w, "  %-40s n=%-6d p50 %7.1f  p90 %7.1f  p99 %7.1f  max %7.1f ms\n", s.Name, l.Count, l.P50, l.P90, l.P99, l.Max)
	}
}
