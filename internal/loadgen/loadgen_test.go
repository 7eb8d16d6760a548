package loadgen

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestPercentilesOfKnownDistribution(t *testing.T) {
	var r Recorder
	// 1..1000 ms, shuffled: p50 = 500, p90 = 900, p99 = 990, p99.9 = 999, max 1000.
	for _, i := range rand.Perm(1000) {
		r.Add(time.Duration(i+1) * time.Millisecond)
	}
	s := r.Summary()
	if s.Count != 1000 || s.P50 != 500 || s.P90 != 900 || s.P99 != 990 || s.P999 != 999 || s.Max != 1000 || s.Mean != 500.5 {
		t.Fatalf("summary %+v", s)
	}
	if Percentile(nil, 50) != 0 || (&Recorder{}).Summary().Count != 0 {
		t.Fatal("empty recorder")
	}
	one := []time.Duration{7}
	if Percentile(one, 0.1) != 7 || Percentile(one, 100) != 7 {
		t.Fatal("single sample")
	}
}

// TestOpenLoopSendsOnScheduleUnderASlowTarget: each "request" takes 300 ms, far longer than the
// 10 ms interval; the sends must still start on schedule.
func TestOpenLoopSendsOnScheduleUnderASlowTarget(t *testing.T) {
	var mu sync.Mutex
	var starts []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	openLoop(context.Background(), start, 100, 30, func(i int, due time.Time) {
		mu.Lock()
		starts = append(starts, time.Since(start))
		mu.Unlock()
		wg.Go(func() { time.Sleep(300 * time.Millisecond) }) // the slow target
	})
	wg.Wait()
	if len(starts) != 30 {
		t.Fatalf("%d sends", len(starts))
	}
	// The 30th send is due at 290 ms; a closed loop would start it after 29 × 300 ms.
	if last := starts[29]; last > 1500*time.Millisecond {
		t.Fatalf("last send started after %v: the loop waited for responses", last)
	}
	if !slices.IsSorted(starts) {
		t.Fatal("sends out of order")
	}
}

func TestBuildOrderMixIsReproducible(t *testing.T) {
	cfg := Config{ItemsMin: 1, ItemsMax: 3, RejectShare: 0.2, DeclineShare: 0.1, Customers: 10}
	a, b := rand.New(rand.NewPCG(5, 5)), rand.New(rand.NewPCG(5, 5))
	counts := map[Kind]int{}
	for i := 0; i < 2000; i++ {
		ka, ba := buildOrder(a, cfg)
		kb, bb := buildOrder(b, cfg)
		if ka != kb || ba != bb {
			t.Fatal("same seed produced different orders")
		}
		counts[ka]++
	}
	if counts[KindReject] < 300 || counts[KindReject] > 500 || counts[KindDecline] < 120 || counts[KindDecline] > 280 {
		t.Fatalf("mix %v", counts)
	}
}

// The run reports the load generator's own CPU: spinning must show up in it.
func TestProcessCPUCountsOwnWork(t *testing.T) {
	before := processCPU()
	n := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); n++ {
		if processCPU()-before >= 20*time.Millisecond {
			return
		}
	}
	t.Fatalf("processCPU grew by %v after %d spins (10 s)", processCPU()-before, n)
}
