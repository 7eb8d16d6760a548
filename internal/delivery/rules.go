package delivery

import (
	"fmt"
	"hash/fnv"
	"time"
)

// Rules are the deterministic business rules of delivery: the driver pool, the initial ETA and the
// ETA drift. Durations are simulated time; Speed converts them to real time.
type Rules struct {
	Drivers      int
	Capacity     int
	Speed        float64       // simulated time per real time (>= 1)
	EtaThreshold time.Duration // simulated
}

var zones = []string{"north", "south", "east", "west", "center"}

var driverNames = []string{"Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov",
	"Donald Knuth", "Margaret Hamilton", "Ken Thompson", "Frances Allen", "Dennis Ritchie", "Radia Perlman",
	"John McCarthy", "Hedy Lamarr", "Tim Berners-Lee", "Katherine Johnson", "Leslie Lamport", "Shafi Goldwasser",
	"Niklaus Wirth", "Sophie Wilson", "Tony Hoare"}

// driver returns the seeded driver number i (1-based): a name and a home zone.
func driver(i int) (name, zone string) {
	name = driverNames[(i-1)%len(driverNames)]
	if i > len(driverNames) {
		name = fmt.Sprintf("%s %d", name, (i-1)/len(driverNames)+1)
	}
	return name, zones[(i-1)%len(zones)]
}

func hash(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}

// zoneOf places an order in a delivery zone, from its id.
func zoneOf(orderID string) string { return zones[hash("zone", orderID)%uint64(len(zones))] }

// real converts a simulated duration to real time.
func (r Rules) real(d time.Duration) time.Duration { return time.Duration(float64(d) / r.Speed) }

// InitialETA is now plus 30 to 60 simulated minutes, chosen by the orderId.
func (r Rules) InitialETA(now time.Time, orderID string) time.Time {
	minutes := 30 + int(hash("eta", orderID)%31)
	return now.Add(r.real(time.Duration(minutes) * time.Minute)).UTC().Truncate(time.Millisecond)
}

// MaxDelivery bounds a delivery (simulated time from assignment): however traffic drifts, the
// ETA never moves beyond it, so every delivery completes.
const MaxDelivery = 90 * time.Minute

// NextETA recalculates an active delivery's ETA: the remaining time is scaled by a traffic factor
// between 0.80 and 1.05 that depends on the zone and the scheduler slot (the same inputs give the
// same answer; on average the remaining time shrinks), never before now and never after
// assignedAt + MaxDelivery.
func (r Rules) NextETA(now, eta, assignedAt time.Time, zone string, slot int64) time.Time {
	remaining := eta.Sub(now)
	if remaining <= 0 {
		return now
	}
	factor := 0.80 + float64(hash("traffic", zone, fmt.Sprint(slot))%26)/100
	next := now.Add(time.Duration(float64(remaining) * factor)).UTC().Truncate(time.Millisecond)
	if limit := assignedAt.Add(r.real(MaxDelivery)).UTC().Truncate(time.Millisecond); next.After(limit) {
		next = limit
	}
	if next.Before(now) {
		return now
	}
	return next
}

// Significant reports whether an ETA change is worth publishing.
func (r Rules) Significant(old, next time.Time) bool {
	d := next.Sub(old)
	if d < 0 {
		d = -d
	}
	return d >= r.real(r.EtaThreshold)
}
