package httpx

import (
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Access says who may call a route. Every route is registered with one, so a route cannot be
// added without deciding its protection.
type Access string

const (
	// Operator routes need the admin bearer token (or, while none is set, a loopback client).
	Operator Access = "operator"
	// Customer routes are open and rate-limited per client address.
	Customer Access = "customer"
	// Platform routes (probes, metrics, build info) are open and carry no secrets; only
	// Ops.Register adds them.
	Platform Access = "platform"
)

// Route is a served pattern and its protection (GET /info lists them).
type Route struct {
	Pattern string `json:"pattern"`
	Access  Access `json:"access"`
}

// Mux is an http.ServeMux whose routes each carry an Access: operator routes go through the
// admin guard and customer routes through the rate limiter here, not in each handler.
type Mux struct {
	mux   *http.ServeMux
	guard *Guard
	// CORS, when set, wraps customer routes outermost, so a browser can also read their 429s. Set
	// it before registering them: it applies to the routes registered after it.
	CORS   *CORS
	mu     sync.Mutex
	routes []Route
	serve  http.Handler // mux, or mux wrapped by Instrument
	// platform holds the paths of the platform routes (all registered before serving starts).
	platform map[string]bool
}

// NewMux returns an empty Mux that protects its routes with a Guard built from c.
func NewMux(c GuardConfig) *Mux {
	m := &Mux{mux: http.NewServeMux(), guard: NewGuard(c), platform: map[string]bool{}}
	m.serve = m.mux
	return m
}

// Instrument wraps the routing (tracing) before serving starts. The wrapper hands its request to
// the router itself, so it sees the route the router matched (http.Request.Pattern).
func (m *Mux) Instrument(wrap func(http.Handler) http.Handler) { m.serve = wrap(m.mux) }

// Operator registers h for pattern behind the admin guard.
func (m *Mux) Operator(pattern string, h http.HandlerFunc) {
	m.add(pattern, Operator, m.guard.admin(h))
}

// Customer registers h for pattern behind the per-address rate limiter.
func (m *Mux) Customer(pattern string, h http.HandlerFunc) {
	h = m.guard.public(h)
	if m.CORS != nil {
		h = m.CORS.Wrap(h)
	}
	m.add(pattern, Customer, h)
}

// platform registers an open route; only Ops.Register calls it.
func (m *Mux) platformRoute(pattern string, h http.Handler) {
	_, path, _ := strings.Cut(pattern, " ")
	m.platform[path] = true
	m.add(pattern, Platform, h)
}

// Traced reports whether a request is worth a trace: not a probe, a scrape or a profile.
func (m *Mux) Traced(r *http.Request) bool {
	return !m.platform[r.URL.Path] && !strings.HasPrefix(r.URL.Path, "/debug/")
}

func (m *Mux) add(pattern string, a Access, h http.Handler) {
	m.mu.Lock()
	m.routes = append(m.routes, Route{pattern, a})
	m.mu.Unlock()
	m.mux.Handle(pattern, h)
}

// ServeHTTP dispatches to the registered routes, with the client address a trusted proxy forwarded
// the request for (GuardConfig.TrustedProxies) as its RemoteAddr.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.serve.ServeHTTP(w, m.guard.resolve(r))
}

// pattern returns the registered pattern r matches ("" for none).
func (m *Mux) pattern(r *http.Request) string {
	_, p := m.mux.Handler(r)
	return p
}

// Routes returns the registered routes, sorted by pattern.
func (m *Mux) Routes() []Route {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.routes)
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Pattern, b.Pattern) })
	return out
}
