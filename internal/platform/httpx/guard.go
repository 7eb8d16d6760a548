package httpx

import (
	"container/list"
	"crypto/subtle"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// GuardConfig is the access policy of a service's HTTP API.
type GuardConfig struct {
	// AdminToken protects operator endpoints (Authorization: Bearer <token>). Empty: operator
	// endpoints answer loopback clients only, or nobody when loopback is not trusted.
	AdminToken string
	// DistrustLoopback treats a loopback client like any other: no operator access without the
	// token, no rate-limit exemption. For containers, where a sidecar proxy (Istio forwards from
	// 127.0.0.6, Linkerd from 127.0.0.1) makes every request arrive from loopback.
	DistrustLoopback bool
	// TrustedProxies are the addresses whose X-Forwarded-For is believed: a request from one of
	// them counts as coming from the nearest address in that header that is not a trusted proxy.
	// Empty: the peer address is the client.
	TrustedProxies []netip.Prefix
	// RatePerSecond and Burst bound customer-facing requests per client address; 0 disables.
	RatePerSecond float64
	Burst         int
	// ExemptLoopback lets local tools and load runs through unlimited.
	ExemptLoopback bool
	// MaxClients bounds the client addresses the limiter remembers (0: DefaultMaxClients); the
	// least recently seen is forgotten first.
	MaxClients int
}

// DefaultMaxClients is the limiter's memory bound when GuardConfig.MaxClients is 0: about 2 MiB.
const DefaultMaxClients = 10000

// Guard applies GuardConfig: admin wraps operator routes, public customer-facing ones. Mux applies
// them by each route's Access.
type Guard struct {
	cfg GuardConfig
	mu  sync.Mutex
	// lru holds *visitor, most recently seen first; ips indexes it by client key.
	lru *list.List
	ips map[string]*list.Element
	now func() time.Time
}

type visitor struct {
	key string
	lim *rate.Limiter
}

// NewGuard builds a Guard.
func NewGuard(c GuardConfig) *Guard {
	if c.MaxClients <= 0 {
		c.MaxClients = DefaultMaxClients
	}
	return &Guard{cfg: c, lru: list.New(), ips: map[string]*list.Element{}, now: time.Now}
}

func clientIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return net.ParseIP(host)
}

// loopbackClient reports whether r comes from a loopback client that is trusted as local.
func (g *Guard) loopbackClient(r *http.Request) bool {
	ip := clientIP(r)
	return !g.cfg.DistrustLoopback && ip != nil && ip.IsLoopback()
}

// forwardedClient returns the address r was forwarded for when its peer is a trusted proxy: the
// rightmost X-Forwarded-For entry that is not itself a trusted proxy (entries to its left are
// written by the client and can be forged). ok is false when r did not come through one.
func (g *Guard) forwardedClient(r *http.Request) (addr netip.Addr, ok bool) {
	if len(g.cfg.TrustedProxies) == 0 {
		return netip.Addr{}, false
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !g.trustedProxy(peer.Addr()) {
		return netip.Addr{}, false
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}, false // a garbled chain: keep the peer, which is known
		}
		if addr = a.Unmap(); !g.trustedProxy(addr) {
			return addr, true
		}
	}
	return addr, addr.IsValid()
}

func (g *Guard) trustedProxy(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range g.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// resolve sets r.RemoteAddr to the client a trusted proxy forwarded r for, so the guard, the
// limiter's key and the handlers see the client, not the proxy.
func (g *Guard) resolve(r *http.Request) *http.Request {
	a, ok := g.forwardedClient(r)
	if !ok {
		return r
	}
	r2 := r.WithContext(r.Context()) // a shallow copy
	r2.RemoteAddr = netip.AddrPortFrom(a, 0).String()
	return r2
}

// ClientKey is what per-client limits count by: the IPv4 address, or the IPv6 /64 (one host usually
// holds a whole /64, so counting single IPv6 addresses would let it rotate past the limit).
func ClientKey(r *http.Request) string {
	ip := clientIP(r)
	switch {
	case ip == nil:
		return "unknown"
	case ip.To4() != nil:
		return ip.To4().String()
	default:
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
}

// operator reports whether r is from an operator: the right bearer token (compared in constant
// time), or a loopback client while no token is configured.
func (g *Guard) operator(r *http.Request) bool {
	if g.cfg.AdminToken == "" {
		return g.loopbackClient(r)
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(g.cfg.AdminToken)) == 1
}

// admin lets a request through with the right bearer token (compared in constant time), or from a
// loopback client when no token is configured; 401 or 403 with a problem body otherwise.
func (g *Guard) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case g.operator(r):
			h(w, r)
		case g.cfg.AdminToken == "" && g.cfg.DistrustLoopback:
			WriteProblem(w, r, NewProblem(http.StatusForbidden, "operator endpoints are closed: ADMIN_TOKEN is unset and loopback clients are not trusted"))
		case g.cfg.AdminToken == "":
			WriteProblem(w, r, NewProblem(http.StatusForbidden, "operator endpoints answer loopback clients only while ADMIN_TOKEN is unset"))
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow operator endpoints"`)
			WriteProblem(w, r, NewProblem(http.StatusUnauthorized, "operator endpoints need Authorization: Bearer <ADMIN_TOKEN>"))
		}
	}
}

// public rate-limits h per client address: 429 with Retry-After when the client's bucket is empty.
func (g *Guard) public(h http.HandlerFunc) http.HandlerFunc {
	if g.cfg.RatePerSecond <= 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.ExemptLoopback && g.loopbackClient(r) {
			h(w, r)
			return
		}
		if wait := g.reserve(ClientKey(r)); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			WriteProblem(w, r, NewProblem(http.StatusTooManyRequests, "too many requests from this address; retry after the time in Retry-After"))
			return
		}
		h(w, r)
	}
}

// reserve takes a token for the client key and returns 0, or how long until one is available.
// At most MaxClients keys are remembered: a new one evicts the least recently seen, whose bucket
// has usually refilled anyway (a full bucket is what a forgotten client starts with again).
func (g *Guard) reserve(key string) time.Duration {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var v *visitor
	if e, ok := g.ips[key]; ok {
		g.lru.MoveToFront(e)
		v = e.Value.(*visitor)
	} else {
		if g.lru.Len() >= g.cfg.MaxClients {
			oldest := g.lru.Back()
			g.lru.Remove(oldest)
			delete(g.ips, oldest.Value.(*visitor).key)
		}
		v = &visitor{key: key, lim: rate.NewLimiter(rate.Limit(g.cfg.RatePerSecond), max(g.cfg.Burst, 1))}
		g.ips[key] = g.lru.PushFront(v)
	}
	res := v.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// clients is how many client keys the limiter remembers (tests).
func (g *Guard) clients() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.ips)
}
