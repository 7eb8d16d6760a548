package httpx

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLimiterMemoryIsBounded feeds 100 000 distinct addresses: the limiter never remembers more
// than MaxClients, and a client it still remembers stays limited.
func TestLimiterMemoryIsBounded(t *testing.T) {
	g := NewGuard(GuardConfig{RatePerSecond: 1, Burst: 1, MaxClients: 1000})
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	h := g.public(ok)
	for i := range 100_000 {
		remote := fmt.Sprintf("10.%d.%d.%d:1", i>>16, i>>8&255, i&255)
		if c := call(h, remote, "").Code; c != 200 {
			t.Fatalf("address %d, first request: %d", i, c)
		}
		if n := g.clients(); n > 1000 {
			t.Fatalf("after %d addresses the limiter remembers %d", i+1, n)
		}
		if i%1000 == 999 {
			// A client seen a moment ago is still remembered: its bucket is empty.
			if c := call(h, remote, "").Code; c != 429 {
				t.Fatalf("address %d, second request at once: %d, want 429", i, c)
			}
		}
	}
	if n := g.clients(); n != 1000 {
		t.Errorf("remembers %d clients, want the bound 1000", n)
	}
	if NewGuard(GuardConfig{}).cfg.MaxClients != DefaultMaxClients {
		t.Error("MaxClients 0 does not mean the default bound")
	}
}

// TestIPv6ClientsCountByPrefix: addresses of one /64 share a bucket, so rotating through them does
// not escape the limit.
func TestIPv6ClientsCountByPrefix(t *testing.T) {
	g := NewGuard(GuardConfig{RatePerSecond: 1, Burst: 2})
	h := g.public(ok)
	codes := []int{}
	for i := range 3 {
		codes = append(codes, call(h, fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1), "").Code)
	}
	if codes[2] != 429 {
		t.Errorf("three addresses of one /64: %v, want the third limited", codes)
	}
	if c := call(h, "[2001:db8:1:3::1]:1", "").Code; c != 200 {
		t.Errorf("another /64 limited: %d", c)
	}
}

func TestPageTokens(t *testing.T) {
	p := NewPageTokens("deployment secret")
	cursor := []byte("paging state \x00\x01\x02")
	tok := p.Seal("scope-a", cursor)
	if got, err := p.Open("scope-a", tok); err != nil || !bytes.Equal(got, cursor) {
		t.Fatalf("round trip: %q %v", got, err)
	}
	if got, err := NewPageTokens("deployment secret").Open("scope-a", tok); err != nil || !bytes.Equal(got, cursor) {
		t.Errorf("another replica with the same secret: %q %v", got, err)
	}
	if p.Seal("scope-a", nil) != "" {
		t.Error("no cursor must seal to no token")
	}
	if got, err := p.Open("scope-a", ""); got != nil || err != nil {
		t.Errorf("empty token: %q %v", got, err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for i := range raw {
		for _, bit := range []byte{1, 0x80} {
			b := bytes.Clone(raw)
			b[i] ^= bit
			if _, err := p.Open("scope-a", base64.RawURLEncoding.EncodeToString(b)); !errors.Is(err, ErrBadPageToken) {
				t.Fatalf("byte %d altered: %v", i, err)
			}
		}
	}
	for name, bad := range map[string]string{
		"other scope":  "",
		"other secret": NewPageTokens("other").Seal("scope-a", cursor),
		"truncated":    tok[:len(tok)-3],
		"not base64":   "%%%",
		"too long":     strings.Repeat("A", 2000),
		"random":       p.Seal("scope-b", cursor)[:10],
	} {
		scope := "scope-a"
		if name == "other scope" {
			scope, bad = "scope-b", tok
		}
		if _, err := p.Open(scope, bad); !errors.Is(err, ErrBadPageToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewPageTokens("").Open("scope-a", NewPageTokens("").Seal("scope-a", cursor)); err == nil {
		t.Error("two processes without a secret share a key")
	}
}

// TestMuxAppliesAccess: each route is protected by the Access it was registered with, and
// /info lists every route with it.
func TestMuxAppliesAccess(t *testing.T) {
	mux := NewMux(GuardConfig{AdminToken: "tok", RatePerSecond: 1, Burst: 1})
	Ops{Health: NewHealth(), Gatherer: prometheus.NewRegistry()}.Register(mux)
	mux.Operator("GET /op", ok)
	mux.Customer("GET /cu", ok)
	get := func(path, auth string) int {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = "203.0.113.5:1"
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w.Code
	}
	if c := get("/op", ""); c != 401 {
		t.Errorf("operator route without a token: %d", c)
	}
	if c := get("/op", "Bearer tok"); c != 200 {
		t.Errorf("operator route with the token: %d", c)
	}
	if a, b := get("/cu", ""), get("/cu", ""); a != 200 || b != 429 {
		t.Errorf("customer route: %d then %d, want 200 then 429", a, b)
	}
	for range 3 {
		if c := get("/healthz", ""); c != 200 {
			t.Errorf("platform route limited or guarded: %d", c)
		}
	}
	r := httptest.NewRequest("GET", "/info", nil)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	var info BuildInfo
	_ = json.Unmarshal(w.Body.Bytes(), &info)
	got := map[string]Access{}
	for _, rt := range info.Routes {
		got[rt.Pattern] = rt.Access
	}
	if got["GET /op"] != Operator || got["GET /cu"] != Customer || got["GET /metrics"] != Platform || len(got) != 10 {
		t.Errorf("/info routes: %v", got)
	}
}

// TestInternalErrorsStayInTheLog: a dependency failure answers a generic problem with a request
// id; the error text is only in the log line, which carries the same id.
func TestInternalErrorsStayInTheLog(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	mux := NewMux(GuardConfig{})
	mux.Customer("GET /x", func(w http.ResponseWriter, r *http.Request) {
		Unavailable(w, r, log, "order store", errors.New("dial tcp 10.1.2.3:5432: password authentication failed for user \"svc\""))
	})
	h := NewMetrics(prometheus.NewRegistry()).Wrap(mux, log)
	for _, given := range []string{"", "trace-abc.1", "bad id\nwith a newline"} {
		logs.Reset()
		r := httptest.NewRequest("GET", "/x", nil)
		if given != "" {
			r.Header.Set("X-Request-Id", given)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		body := w.Body.String()
		var p Problem
		_ = json.Unmarshal(w.Body.Bytes(), &p)
		if w.Code != 503 || p.RequestID == "" || w.Header().Get("X-Request-Id") != p.RequestID {
			t.Fatalf("status %d, problem %+v, header %q", w.Code, p, w.Header().Get("X-Request-Id"))
		}
		if strings.Contains(body, "10.1.2.3") || strings.Contains(body, "password") {
			t.Errorf("internal error text in the response: %s", body)
		}
		if !strings.Contains(logs.String(), "password authentication failed") || !strings.Contains(logs.String(), `"requestId":"`+p.RequestID+`"`) {
			t.Errorf("log line lacks the error or the request id %s: %s", p.RequestID, logs.String())
		}
		switch given {
		case "trace-abc.1":
			if p.RequestID != given {
				t.Errorf("a plausible X-Request-Id was replaced: %q", p.RequestID)
			}
		case "":
		default:
			if p.RequestID == given {
				t.Error("an X-Request-Id with a newline was kept")
			}
		}
	}
}
