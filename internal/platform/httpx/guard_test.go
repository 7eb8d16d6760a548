package httpx

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func call(h http.HandlerFunc, remote, auth string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/api/x", nil)
	r.RemoteAddr = remote
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h(w, r)
	return w
}

var ok = func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

func TestAdminWithToken(t *testing.T) {
	g := NewGuard(GuardConfig{AdminToken: "s3cret"})
	for _, c := range []struct {
		remote, auth string
		want         int
	}{
		{"203.0.113.9:5000", "Bearer s3cret", 200},
		{"127.0.0.1:5000", "", 401}, // a token, once set, is required from everyone
		{"203.0.113.9:5000", "Bearer wrong", 401},
		{"203.0.113.9:5000", "Basic s3cret", 401},
		{"203.0.113.9:5000", "Bearer s3cret ", 401},
	} {
		w := call(g.admin(ok), c.remote, c.auth)
		if w.Code != c.want {
			t.Errorf("%s %q: %d, want %d", c.remote, c.auth, w.Code, c.want)
		}
		if w.Code == 401 {
			var p Problem
			if json.Unmarshal(w.Body.Bytes(), &p) != nil || p.Status != 401 || w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without a problem body or WWW-Authenticate: %s %v", w.Body, w.Header())
			}
		}
	}
}

func TestAdminWithoutTokenIsLoopbackOnly(t *testing.T) {
	g := NewGuard(GuardConfig{})
	for remote, want := range map[string]int{"127.0.0.1:4000": 200, "[::1]:4000": 200, "10.0.0.7:4000": 403, "203.0.113.9:1": 403} {
		if w := call(g.admin(ok), remote, ""); w.Code != want {
			t.Errorf("%s: %d, want %d", remote, w.Code, want)
		}
	}
}

func TestPublicRateLimitPerAddress(t *testing.T) {
	g := NewGuard(GuardConfig{RatePerSecond: 1, Burst: 2, ExemptLoopback: true})
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	h := g.public(ok)
	codes := []int{}
	for range 3 {
		codes = append(codes, call(h, "203.0.113.9:1", "").Code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("burst of 2 then limited: %v", codes)
	}
	w := call(h, "203.0.113.9:1", "")
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", w.Header().Get("Retry-After"))
	}
	if c := call(h, "198.51.100.4:1", "").Code; c != 200 {
		t.Errorf("another address is limited too: %d", c)
	}
	for range 10 {
		if c := call(h, "127.0.0.1:1", "").Code; c != 200 {
			t.Fatalf("loopback limited: %d", c)
		}
	}
	now = now.Add(time.Second)
	if c := call(h, "203.0.113.9:1", "").Code; c != 200 {
		t.Errorf("after a second the bucket has a token again: %d", c)
	}
	if c := call(NewGuard(GuardConfig{RatePerSecond: 1, Burst: 1}).public(ok), "127.0.0.1:1", "").Code; c != 200 {
		t.Errorf("first loopback request without exemption: %d", c)
	}
}

// In a pod, a sidecar proxy makes every request arrive from loopback (Istio from 127.0.0.6): with
// loopback distrusted it gets neither operator access nor the rate-limit exemption.
func TestDistrustedLoopbackIsAnyClient(t *testing.T) {
	g := NewGuard(GuardConfig{AdminToken: "s3cret", DistrustLoopback: true, RatePerSecond: 1, Burst: 1, ExemptLoopback: true})
	for _, remote := range []string{"127.0.0.6:4000", "127.0.0.1:4000", "[::1]:4000"} {
		if w := call(g.admin(ok), remote, ""); w.Code != 401 {
			t.Errorf("%s without the token: %d, want 401", remote, w.Code)
		}
		if w := call(g.admin(ok), remote, "Bearer s3cret"); w.Code != 200 {
			t.Errorf("%s with the token: %d, want 200", remote, w.Code)
		}
	}
	h := g.public(ok)
	if a, b := call(h, "127.0.0.6:1", "").Code, call(h, "127.0.0.6:2", "").Code; a != 200 || b != 429 {
		t.Errorf("distrusted loopback is rate-limited like any address: %d then %d, want 200 then 429", a, b)
	}
	// Without a token nobody is an operator; the service refuses to start that way, the guard
	// still closes the door.
	g = NewGuard(GuardConfig{DistrustLoopback: true})
	if w := call(g.admin(ok), "127.0.0.6:4000", ""); w.Code != 403 {
		t.Errorf("no token, distrusted loopback: %d, want 403", w.Code)
	}
}

func TestTrustedProxyForwardsTheClient(t *testing.T) {
	g := NewGuard(GuardConfig{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("127.0.0.6/32")}})
	for _, c := range []struct{ peer, xff, want string }{
		{"10.1.2.3:5000", "203.0.113.9", "203.0.113.9:0"},
		{"10.1.2.3:5000", "198.51.100.1, 203.0.113.9, 10.1.9.9", "203.0.113.9:0"}, // the client's own entries are not believed
		{"127.0.0.6:5000", "203.0.113.9", "203.0.113.9:0"},
		{"203.0.113.50:5000", "127.0.0.1", "203.0.113.50:5000"}, // not a trusted proxy: its header is ignored
		{"10.1.2.3:5000", "", "10.1.2.3:5000"},
		{"10.1.2.3:5000", "not-an-ip", "10.1.2.3:5000"},
		{"10.1.2.3:5000", "10.1.4.4", "10.1.4.4:0"}, // only proxies in the chain: the farthest
	} {
		r := httptest.NewRequest("GET", "/api/x", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := g.resolve(r).RemoteAddr; got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: client %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}
