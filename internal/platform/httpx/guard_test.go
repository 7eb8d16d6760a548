package httpx

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
