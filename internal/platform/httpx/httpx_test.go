package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	cases := []struct {
		name, ct, body string
		status         int
	}{
		{"ok", "application/json", `{"name":"a","n":1}`, 0},
		{"charset ok", "application/json; charset=utf-8", `{"name":"a"}`, 0},
		{"no content type", "", `{}`, 415},
		{"wrong content type", "text/plain", `{}`, 415},
		{"malformed", "application/json", `{"name":`, 400},
		{"wrong type", "application/json", `{"n":"x"}`, 400},
		{"empty", "application/json", ``, 400},
		{"trailing", "application/json", `{} {}`, 400},
		{"too large", "application/json", `{"name":"` + strings.Repeat("a", 200) + `"}`, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
			if c.ct != "" {
				r.Header.Set("Content-Type", c.ct)
			}
			var v body
			p := DecodeJSON(httptest.NewRecorder(), r, 100, &v)
			if c.status == 0 && p != nil {
				t.Fatalf("unexpected problem %v", p)
			}
			if c.status != 0 && (p == nil || p.Status != c.status) {
				t.Fatalf("got %v, want status %d", p, c.status)
			}
		})
	}
}

func TestProblemAndHealthEndpoints(t *testing.T) {
	h := NewHealth()
	h.AddCheck("db", func(context.Context) (map[string]any, error) { return map[string]any{"x": 1}, nil })
	h.Gate("consumer")
	mux := NewMux(GuardConfig{})
	Ops{Health: h, Info: BuildInfo{Service: "s", Version: "v"}, Gatherer: nil}.Register(mux)

	get := func(path string) (*httptest.ResponseRecorder, map[string]any) {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		var m map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &m)
		return w, m
	}
	if w, _ := get("/readyz"); w.Code != 503 {
		t.Fatalf("ready before gate opened: %d", w.Code)
	}
	h.Open("consumer")
	if w, _ := get("/readyz"); w.Code != 200 {
		t.Fatalf("not ready after gate opened: %d", w.Code)
	}
	if w, m := get("/actuator/health"); w.Code != 200 || m["status"] != "UP" {
		t.Fatalf("health %d %v", w.Code, m)
	}
	h.AddCheck("kafka", func(context.Context) (map[string]any, error) { return nil, errors.New("unreachable") })
	w, m := get("/health")
	comps, _ := m["components"].(map[string]any)
	kafka, _ := comps["kafka"].(map[string]any)
	if w.Code != 503 || m["status"] != "DOWN" || kafka["status"] != "DOWN" {
		t.Fatalf("health with a DOWN dependency: %d %v", w.Code, m)
	}
	op := httptest.NewRequest("GET", "/health", nil)
	op.RemoteAddr = "127.0.0.1:1"
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, op)
	if !strings.Contains(w.Body.String(), `"error":"unreachable"`) {
		t.Errorf("an operator (loopback, no token set) does not see the error: %s", w.Body)
	}
	// Anyone else sees each component's status, never its details or error text.
	r := httptest.NewRequest("GET", "/health", nil)
	r.RemoteAddr = "203.0.113.7:1"
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	if b := w.Body.String(); w.Code != 503 || strings.Contains(b, "unreachable") || strings.Contains(b, "details") || !strings.Contains(b, `"kafka":{"status":"DOWN"}`) {
		t.Errorf("/health for a non-operator: %d %s", w.Code, b)
	}
	h.Draining()
	if w, _ := get("/readyz"); w.Code != 503 {
		t.Fatal("ready while draining")
	}
	if w, m := get("/info"); w.Code != 200 || m["version"] != "v" {
		t.Fatalf("info %v", m)
	}

	rec := httptest.NewRecorder()
	WriteProblem(rec, httptest.NewRequest("GET", "/x", nil), NewProblem(404, "no such order"))
	var p Problem
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != 404 || rec.Header().Get("Content-Type") != "application/problem+json" || p.Instance != "/x" || p.Title != "Not Found" {
		t.Fatalf("problem %d %+v", rec.Code, p)
	}
}

// FuzzDecodeJSON: the decoder every request body goes through (orders, stock changes, DLQ
// replays) answers any body and content type with nil or a 4xx problem, never a panic or a 5xx.
func FuzzDecodeJSON(f *testing.F) {
	f.Add("application/json", []byte(`{"available":5}`))
	f.Add("application/json; charset=utf-8", []byte(`{"eventIds":["a"],"all":false} {}`))
	f.Add("text/plain", []byte(`x`))
	f.Add("application/problem+json", []byte(`{"available":1e400}`))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		var v struct {
			Available *int     `json:"available"`
			EventIDs  []string `json:"eventIds"`
			All       bool     `json:"all"`
		}
		if p := DecodeJSON(httptest.NewRecorder(), r, 256, &v); p != nil && (p.Status < 400 || p.Status > 499) {
			t.Fatalf("status %d for %q %q", p.Status, ct, body)
		}
	})
}
