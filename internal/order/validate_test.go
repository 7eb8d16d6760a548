package order

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/platform/httpx"
)

type fakeOrders struct{}

func (fakeOrders) create(_ context.Context, o newOrder, _ string) (Order, bool, error) {
	return Order{OrderID: "01a2146b-9da9-74b6-8a86-32d88f6ad900", CustomerID: o.CustomerID, TotalAmount: o.Total,
		Currency: o.Currency, Status: "CREATED", CreatedAt: time.Unix(0, 0).UTC()}, false, nil
}
func (fakeOrders) get(context.Context, string) (Order, error) { return Order{}, ErrNotFound }
func (fakeOrders) cancel(context.Context, string, string) (Order, error) {
	return Order{}, ErrNotFound
}

func testAPI() http.Handler {
	mux := httpx.NewMux(httpx.GuardConfig{})
	(&api{store: fakeOrders{}, limits: Limits{MaxItems: 5}.withDefaults(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}).routes(mux)
	return mux
}

func post(h http.Handler, ct, body string) (*httptest.ResponseRecorder, httpx.Problem) {
	r := httptest.NewRequest("POST", "/api/orders", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var p httpx.Problem
	_ = json.Unmarshal(w.Body.Bytes(), &p)
	return w, p
}

func TestCreateValidation(t *testing.T) {
	h := testAPI()
	item := `{"itemId":"SKU-1","quantity":1,"unitPrice":10}`
	cases := []struct {
		name, ct, body string
		status         int
		field          string
	}{
		{"valid", "application/json", `{"customerId":"c","currency":"EUR","items":[` + item + `]}`, 201, ""},
		{"missing customer", "application/json", `{"currency":"EUR","items":[` + item + `]}`, 400, "customerId"},
		{"blank customer", "application/json", `{"customerId":"  ","currency":"EUR","items":[` + item + `]}`, 400, "customerId"},
		{"control chars in customer", "application/json", `{"customerId":"a\u0000b","currency":"EUR","items":[` + item + `]}`, 400, "customerId"},
		{"long customer", "application/json", `{"customerId":"` + strings.Repeat("c", 65) + `","currency":"EUR","items":[` + item + `]}`, 400, "customerId"},
		{"missing items", "application/json", `{"customerId":"c","currency":"EUR"}`, 400, "items"},
		{"empty items", "application/json", `{"customerId":"c","currency":"EUR","items":[]}`, 400, "items"},
		{"missing itemId", "application/json", `{"customerId":"c","currency":"EUR","items":[{"quantity":1,"unitPrice":1}]}`, 400, "items[0].itemId"},
		{"zero quantity", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":0,"unitPrice":1}]}`, 400, "items[0].quantity"},
		{"negative quantity", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":-1,"unitPrice":1}]}`, 400, "items[0].quantity"},
		{"fractional quantity", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":1.5,"unitPrice":1}]}`, 400, "items[0].quantity"},
		{"huge quantity", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":1e30,"unitPrice":1}]}`, 400, "items[0].quantity"},
		{"missing quantity", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","unitPrice":1}]}`, 400, "items[0].quantity"},
		{"zero price", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":1,"unitPrice":0}]}`, 400, "items[0].unitPrice"},
		{"negative price", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":1,"unitPrice":-5}]}`, 400, "items[0].unitPrice"},
		{"three decimals", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":1,"unitPrice":1.005}]}`, 400, "items[0].unitPrice"},
		{"missing price", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":1}]}`, 400, "items[0].unitPrice"},
		{"price exponent bomb", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":1,"unitPrice":1e999999999}]}`, 400, "items[0].unitPrice"},
		{"unknown currency", "application/json", `{"customerId":"c","currency":"ABC","items":[` + item + `]}`, 400, "currency"},
		{"lower-case currency", "application/json", `{"customerId":"c","currency":"eur","items":[` + item + `]}`, 400, "currency"},
		{"missing currency", "application/json", `{"customerId":"c","items":[` + item + `]}`, 400, "currency"},
		{"total overflow", "application/json", `{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":10000,"unitPrice":999999999999.99}]}`, 400, "items"},
		{"too many items", "application/json", `{"customerId":"c","currency":"EUR","items":[` + strings.Repeat(item+",", 5) + item + `]}`, 413, "items"},
		{"body too large", "application/json", `{"customerId":"` + strings.Repeat("x", 70<<10) + `"}`, 413, ""},
		{"malformed JSON", "application/json", `{"customerId":`, 400, ""},
		{"wrong type", "application/json", `{"customerId":5,"currency":"EUR","items":[]}`, 400, "customerId"},
		{"wrong content type", "text/plain", `{}`, 415, ""},
		{"no content type", "", `{}`, 415, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, p := post(h, c.ct, c.body)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body.String())
			}
			if c.status >= 400 && w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("content type %q", w.Header().Get("Content-Type"))
			}
			if c.field != "" {
				found := false
				for _, fe := range p.Errors {
					found = found || fe.Field == c.field
				}
				if !found {
					t.Fatalf("problem does not name %s: %s", c.field, w.Body.String())
				}
			}
		})
	}
}

func TestTotalIsExact(t *testing.T) {
	w, _ := post(testAPI(), "application/json",
		`{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":3,"unitPrice":0.1},{"itemId":"b","quantity":1,"unitPrice":0.2}]}`)
	var o struct {
		TotalAmount json.RawMessage `json:"totalAmount"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &o)
	if string(o.TotalAmount) != "0.50" {
		t.Fatalf("total %s, want 0.50", o.TotalAmount)
	}
}

func TestGetRejectsMalformedID(t *testing.T) {
	w := httptest.NewRecorder()
	testAPI().ServeHTTP(w, httptest.NewRequest("GET", "/api/orders/not-a-uuid", nil))
	if w.Code != 400 {
		t.Fatalf("status %d", w.Code)
	}
}

func FuzzCreateNeverFails500(f *testing.F) {
	f.Add(`{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":1,"unitPrice":10}]}`)
	f.Add(`{"customerId":"c","currency":"EUR","items":[{"itemId":"a","quantity":"1","unitPrice":"1e5"}]}`)
	f.Add(`{"items":[{},{},null]}`)
	f.Add(`[]`)
	h := testAPI()
	f.Fuzz(func(t *testing.T, body string) {
		w, _ := post(h, "application/json", body)
		if w.Code >= 500 {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body.String())
		}
	})
}

func TestCORSOnlyForConfiguredOrigins(t *testing.T) {
	mux := httpx.NewMux(httpx.GuardConfig{})
	(&api{store: fakeOrders{}, limits: Limits{}.withDefaults(), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		cors: httpx.CORS{Origins: []string{"http://127.0.0.1:8080"}, Methods: []string{"GET", "POST"}, Headers: []string{"Content-Type"}}}).routes(mux)
	req := func(method, origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/api/orders", strings.NewReader(`{"customerId":"c","currency":"EUR","items":[{"itemId":"SKU-001","quantity":1,"unitPrice":"1.00"}]}`))
		r.Header.Set("Content-Type", "application/json")
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	if w := req("OPTIONS", "http://127.0.0.1:8080"); w.Code != 204 || w.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1:8080" ||
		!strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight from an allowed origin: %d %v", w.Code, w.Header())
	}
	if w := req("OPTIONS", "http://evil.example"); w.Code != 403 || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", w.Code, w.Header())
	}
	if w := req("POST", "http://127.0.0.1:8080"); w.Code != 201 || w.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1:8080" {
		t.Fatalf("POST from an allowed origin: %d %v", w.Code, w.Header())
	}
	if w := req("POST", "http://evil.example"); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("POST from another origin got CORS headers")
	}
	// The default (no origins) adds nothing.
	if w := httptest.NewRecorder(); true {
		r := httptest.NewRequest("OPTIONS", "/api/orders", nil)
		r.Header.Set("Origin", "http://127.0.0.1:8080")
		testAPI().ServeHTTP(w, r)
		if w.Code != 403 {
			t.Fatalf("CORS must be off by default: %d", w.Code)
		}
	}
}
