package httpx

import (
	"crypto/subtle"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// GuardConfig is the access policy of a service's HTTP API.
type GuardConfig struct {
	// AdminToken protects operator endpoints (Authorization: Bearer <token>). Empty: operator
	// endpoints answer loopback clients only.
	AdminToken string
	// RatePerSecond and Burst bound customer-facing requests per client address; 0 disables.
	RatePerSecond float64
	Burst         int
	// ExemptLoopback lets local tools and load runs through unlimited.
	ExemptLoopback bool
}

// Guard applies GuardConfig: Admin wraps operator endpoints, Public customer-facing ones.
type Guard struct {
	cfg GuardConfig
	mu  sync.Mutex
	ips map[string]*visitor
	now func() time.Time
}

type visitor struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewGuard builds a Guard.
func NewGuard(c GuardConfig) *Guard {
	return &Guard{cfg: c, ips: map[string]*visitor{}, now: time.Now}
}

func clientIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return net.ParseIP(host)
}

func isLoopback(r *http.Request) bool {
	ip := clientIP(r)
	return ip != nil && ip.IsLoopback()
}

// Admin lets a request through with the right bearer token (compared in constant time), or from a
// loopback client when no token is configured; 401 or 403 with a problem body otherwise.
func (g *Guard) Admin(h http.HandlerFunc) http.HandlerFunc {
	if g == nil { // handler unit tests; every service gets its Guard from service.New
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.AdminToken == "" {
			if !isLoopback(r) {
				WriteProblem(w, r, NewProblem(http.StatusForbidden, "operator endpoints answer loopback clients only while ADMIN_TOKEN is unset"))
				return
			}
			h(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(g.cfg.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow operator endpoints"`)
			WriteProblem(w, r, NewProblem(http.StatusUnauthorized, "operator endpoints need Authorization: Bearer <ADMIN_TOKEN>"))
			return
		}
		h(w, r)
	}
}

// Public rate-limits h per client address: 429 with Retry-After when the client's bucket is empty.
func (g *Guard) Public(h http.HandlerFunc) http.HandlerFunc {
	if g == nil || g.cfg.RatePerSecond <= 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.ExemptLoopback && isLoopback(r) {
			h(w, r)
			return
		}
		if wait := g.reserve(r); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			WriteProblem(w, r, NewProblem(http.StatusTooManyRequests, "too many requests from this address; retry after the time in Retry-After"))
			return
		}
		h(w, r)
	}
}

// reserve takes a token for r's client and returns 0, or how long until one is available.
func (g *Guard) reserve(r *http.Request) time.Duration {
	key := "unknown"
	if ip := clientIP(r); ip != nil {
		key = ip.String()
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.ips[key]
	if !ok {
		if len(g.ips) >= 10000 { // bound memory: forget clients idle for a minute
			for k, old := range g.ips {
				if now.Sub(old.seen) > time.Minute {
					delete(g.ips, k)
				}
			}
		}
		v = &visitor{lim: rate.NewLimiter(rate.Limit(g.cfg.RatePerSecond), max(g.cfg.Burst, 1))}
		g.ips[key] = v
	}
	v.seen = now
	res := v.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}
