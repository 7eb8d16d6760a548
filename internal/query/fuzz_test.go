package query

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
)

// FuzzReadEndpoints sends arbitrary path parameters and query strings to the read API (in-memory
// store holding one real order): every answer is a 2xx or a 4xx problem, never a 5xx or a panic.
func FuzzReadEndpoints(f *testing.F) {
	st := NewMemory()
	id := uuid.NewString()
	for _, e := range saga(f, id) {
		if err := NewProjector(st, prometheus.NewRegistry()).Handle(context.Background(), []event.Envelope{e}); err != nil {
			f.Fatal(err)
		}
	}
	mux := httpx.NewMux(httpx.GuardConfig{})
	testAPI(st, NewHub()).routes(mux)
	for _, s := range []struct{ id, q string }{{id, ""}, {"x", "limit=0"}, {"%00", "limit=101&pageToken=zz"},
		{id, "customerId=cust-7&limit=5"}, {"ünï", "pageToken=" + url.QueryEscape("AAAA")}} {
		f.Add(s.id, s.q)
	}
	f.Fuzz(func(t *testing.T, id, query string) {
		for _, path := range []string{"/api/orders/" + url.PathEscape(id), "/api/orders/" + url.PathEscape(id) + "/events",
			"/api/orders?" + query, "/api/dlq/" + url.PathEscape(id)} {
			if id == "dlq.order-events" || id == "dlq.inventory-events" || id == "dlq.payment-events" || id == "dlq.delivery-events" {
				continue // real DLQ topics are read from Kafka, which this test does not run
			}
			u, err := url.Parse(path)
			if err != nil {
				continue
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.URL, r.RequestURI = u, path // any path the parser accepts, not only what NewRequest builds
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			if w.Code >= 500 {
				t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
			}
		}
	})
}

func TestPageCatalogLoadsOnceOrFailsStartUp(t *testing.T) {
	items, err := loadPageCatalog("")
	if err != nil || len(items) == 0 || items[0].ItemID != "SKU-001" {
		t.Fatalf("built-in catalog: %v %v", items, err)
	}
	if _, err := loadPageCatalog("/nonexistent/catalog.json"); err == nil || !strings.Contains(err.Error(), "QUERY_CATALOG_FILE") {
		t.Fatalf("a missing catalog must name the variable: %v", err)
	}
}
