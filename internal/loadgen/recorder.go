// Package loadgen drives the system with open-loop load and measures it: POST latency and
// end-to-end latency from the scheduled send time to the moment the query-api shows the order's
// terminal status.
package loadgen

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Recorder collects latency samples; safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	samples []time.Duration
}

// Add records one sample.
func (r *Recorder) Add(d time.Duration) {
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.mu.Unlock()
}

// Summary is a latency distribution in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	P999  float64 `json:"p999Ms"`
	Max   float64 `json:"maxMs"`
	Mean  float64 `json:"meanMs"`
}

// Summary computes exact percentiles (nearest rank) over all samples.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	s := slices.Clone(r.samples)
	r.mu.Unlock()
	if len(s) == 0 {
		return Summary{}
	}
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return Summary{Count: len(s), P50: ms(Percentile(s, 50)), P90: ms(Percentile(s, 90)), P99: ms(Percentile(s, 99)),
		P999: ms(Percentile(s, 99.9)), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

// Percentile returns the nearest-rank percentile p (0 < p <= 100) of sorted samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted))/100 - 1e-9)) // epsilon: 99.9% of 1000 is rank 999, not 1000
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}
