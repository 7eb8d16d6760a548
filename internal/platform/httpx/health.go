package httpx

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"
)

// Check probes one dependency. It returns details to show in /health and an error when DOWN.
type Check func(ctx context.Context) (details map[string]any, err error)

// Health aggregates dependency checks (/health) and readiness gates (/readyz).
// Readiness is true only when every gate registered with Gate has been opened and Draining was not called.
type Health struct {
	mu       sync.Mutex
	checks   map[string]Check
	gates    map[string]bool
	draining bool
	// Timeout bounds each check; default 2s.
	Timeout time.Duration
}

// NewHealth returns an empty Health.
func NewHealth() *Health { return &Health{checks: map[string]Check{}, gates: map[string]bool{}} }

// AddCheck registers a dependency check under name (postgres, kafka, redis, cassandra).
func (h *Health) AddCheck(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Gate registers a readiness condition, closed until Open(name) is called.
func (h *Health) Gate(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.gates[name]; !ok {
		h.gates[name] = false
	}
}

// Open marks a readiness gate as satisfied (migrations done, consumer joined, ...).
func (h *Health) Open(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gates[name] = true
}

// Draining turns readiness off for good; called first on shutdown.
func (h *Health) Draining() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining = true
}

// Ready reports readiness and the names of closed gates.
func (h *Health) Ready() (bool, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var closed []string
	for n, ok := range h.gates {
		if !ok {
			closed = append(closed, n)
		}
	}
	sort.Strings(closed)
	if h.draining {
		closed = append(closed, "shutting down")
	}
	return len(closed) == 0, closed
}

// ComponentStatus is one entry of the /health document.
type ComponentStatus struct {
	Status  string         `json:"status"`
	Details map[string]any `json:"details,omitempty"`
}

// Report is the /health document.
type Report struct {
	Status     string                     `json:"status"`
	Components map[string]ComponentStatus `json:"components"`
}

// Checks returns the names of the registered checks (the service's dependencies), sorted.
func (h *Health) Checks() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(maps.Keys(h.checks))
}

// Run executes every check concurrently and returns the report; overall UP only when all are UP.
func (h *Health) Run(ctx context.Context) Report {
	h.mu.Lock()
	checks := make(map[string]Check, len(h.checks))
	for k, v := range h.checks {
		checks[k] = v
	}
	h.mu.Unlock()
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	rep := Report{Status: "UP", Components: map[string]ComponentStatus{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			d, err := c(cctx)
			st := ComponentStatus{Status: "UP", Details: d}
			if err != nil {
				st.Status = "DOWN"
				if st.Details == nil {
					st.Details = map[string]any{}
				}
				st.Details["error"] = err.Error()
			}
			mu.Lock()
			rep.Components[name] = st
			if err != nil {
				rep.Status = "DOWN"
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return rep
}

// serveHealth answers the report; only operators see the components' details (addresses, pool
// figures, a failing dependency's error text), everyone else their status.
func (h *Health) serveHealth(w http.ResponseWriter, r *http.Request, details bool) {
	rep := h.Run(r.Context())
	status := http.StatusOK
	if rep.Status != "UP" {
		status = http.StatusServiceUnavailable
	}
	if !details {
		for name, c := range rep.Components {
			rep.Components[name] = ComponentStatus{Status: c.Status}
		}
	}
	WriteJSON(w, status, rep)
}

func (h *Health) serveReady(w http.ResponseWriter, _ *http.Request) {
	ok, closed := h.Ready()
	if !ok {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "NOT_READY", "waitingFor": closed})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"status": "READY"})
}
