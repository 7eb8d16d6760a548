package e2e

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/test/harness"
)

// Readiness as the Kubernetes manifests probe it, scaled down: a backend leaves the balancer after
// probeFailures failed probes probePeriod apart. The services' drain delay is longer than that.
const (
	probePeriod   = 500 * time.Millisecond
	probeFailures = 2
	drainDelay    = "2s"
)

// balancer stands in for a Service and its endpoints: it sends each request to one of the backends
// whose /readyz passed last, like kube-proxy, and counts what went wrong on the way (a transport
// error, or a 5xx answer).
type balancer struct {
	addr     string
	mu       sync.Mutex
	backends map[string]int // address → consecutive failed probes (absent: not an endpoint)
	next     atomic.Uint64
	failed   atomic.Int64 // transport errors and 5xx answers
	served   atomic.Int64 // every other answer
	errs     sync.Map     // error text → true, for the failure message
}

func newBalancer(t *testing.T, first string) *balancer {
	t.Helper()
	b := &balancer{backends: map[string]int{first: 0}}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: b.pick()})
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode >= 500 {
				b.failed.Add(1)
				b.errs.Store(resp.Request.Method+" "+resp.Request.URL.Path+": "+resp.Status, true)
			} else {
				b.served.Add(1)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			b.failed.Add(1)
			b.errs.Store(r.Method+" "+r.URL.Path+": "+err.Error(), true)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	stop := make(chan struct{})
	go b.probe(stop)
	t.Cleanup(func() { close(stop); _ = srv.Close() })
	return b
}

// pick returns a ready backend, round robin ("" when none is: the request fails and is counted).
func (b *balancer) pick() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ready []string
	for a, fails := range b.backends {
		if fails < probeFailures {
			ready = append(ready, a)
		}
	}
	if len(ready) == 0 {
		return "no-ready-backend.invalid"
	}
	return ready[b.next.Add(1)%uint64(len(ready))]
}

// add makes addr an endpoint, ready already (the new instance passed its readiness check).
func (b *balancer) add(addr string) {
	b.mu.Lock()
	b.backends[addr] = 0
	b.mu.Unlock()
}

// remove drops addr from the endpoints (its pod is gone).
func (b *balancer) remove(addr string) {
	b.mu.Lock()
	delete(b.backends, addr)
	b.mu.Unlock()
}

func (b *balancer) probe(stop chan struct{}) {
	c := &http.Client{Timeout: probePeriod}
	tick := time.NewTicker(probePeriod)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		b.mu.Lock()
		addrs := make([]string, 0, len(b.backends))
		for a := range b.backends {
			addrs = append(addrs, a)
		}
		b.mu.Unlock()
		for _, a := range addrs {
			ok := false
			if resp, err := c.Get("http://" + a + "/readyz"); err == nil {
				ok = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
			b.mu.Lock()
			if fails, present := b.backends[a]; present {
				if ok {
					b.backends[a] = 0
				} else {
					b.backends[a] = fails + 1
				}
			}
			b.mu.Unlock()
		}
	}
}

func (b *balancer) failures() string {
	var out []string
	b.errs.Range(func(k, _ any) bool { out = append(out, k.(string)); return true })
	return strings.Join(out, "; ")
}

// TestRollingRestartUnderLoad rolls every service the way a Deployment does (start the new
// instance, wait until it is ready, then SIGTERM the old one) while orders arrive through
// balancers that follow readiness like Kubernetes. The old instances drain (not ready, still
// serving) longer than the balancers take to notice, so no request fails, and every order
// placed completes with every invariant holding.
func TestRollingRestartUnderLoad(t *testing.T) {
	e2e(t)
	ctx := testkit.Context(t, 6*time.Minute)
	sys := start(t, false, "INVENTORY_CATALOG_FILE=", "SHUTDOWN_DRAIN_DELAY="+drainDelay)
	lbs := map[string]*balancer{}
	for _, p := range []string{"ORDER", "QUERY"} {
		lbs[p] = newBalancer(t, sys.Addrs[p])
		sys.Addrs[p] = lbs[p].addr
	}
	const rate, duration = 20, 50 * time.Second
	var res loadgen.Result
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		res = harness.Load(ctx, t, sys, rate, duration, 13)
	}()
	// The roll starts once orders flow through the balancer.
	testkit.Eventually(t, time.Minute, "orders through order-service's balancer", func() bool { return lbs["ORDER"].served.Load() >= 2*rate })
	for _, s := range testkit.Services {
		old := sys.Procs[s.Prefix]
		fresh := sys.AddInstance(t, s.Prefix)
		if lb := lbs[s.Prefix]; lb != nil {
			lb.add(fresh.Addr)
		}
		stopped := time.Now()
		old.Stop()
		took := time.Since(stopped)
		if st := old.State(); st == nil || !st.Success() {
			t.Errorf("old %s did not exit cleanly: %v\n%s", s.Cmd, st, old.Output())
		}
		if d, _ := time.ParseDuration(drainDelay); took < d {
			t.Errorf("old %s exited %s after SIGTERM, before its drain delay %s ended", s.Cmd, took, d)
		}
		if lb := lbs[s.Prefix]; lb != nil {
			lb.remove(old.Addr)
		}
		sys.Procs[s.Prefix] = fresh
		t.Logf("rolled %s: the old instance exited %s after SIGTERM", s.Cmd, took.Round(10*time.Millisecond))
	}
	placedByRollEnd := lbs["ORDER"].served.Load()
	<-loaded
	if lbs["ORDER"].served.Load() == placedByRollEnd {
		t.Error("no order was placed after the last service was rolled: part of the roll was not under load")
	}
	want := int64(rate * duration.Seconds())
	if res.Accepted != want || res.Unfinished != 0 || res.Unexpected != 0 || len(res.Errors) != 0 {
		t.Errorf("load across the roll: accepted %d of %d, unfinished %d, unexpected %d, errors %v", res.Accepted, want, res.Unfinished, res.Unexpected, res.Errors)
	}
	for p, lb := range lbs {
		if lb.served.Load() == 0 {
			t.Errorf("%s's balancer served nothing: the load did not go through it", p)
		}
		if n := lb.failed.Load(); n != 0 {
			t.Errorf("%s: %d of %d requests failed during the roll: %s", p, n, lb.served.Load()+n, lb.failures())
		}
	}
	harness.Verify(t, sys)
}
