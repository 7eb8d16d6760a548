package query

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/orderflow/orderflow/internal/catalog"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/web"
)

// pageRoutes serves the tracking page (web/static) at / and /ui/, and its configuration.
func (a *api) pageRoutes(mux *httpx.Mux) {
	static, _ := fs.Sub(web.Static, "static") // a constant path next to the go:embed directive
	files := http.FileServerFS(static)
	csp := contentSecurityPolicy(a.orderAPI)
	secure := func(h http.Handler) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			hd.Set("Content-Security-Policy", csp)
			hd.Set("X-Content-Type-Options", "nosniff")
			hd.Set("Referrer-Policy", "no-referrer")
			hd.Set("X-Frame-Options", "DENY")
			hd.Set("Cross-Origin-Opener-Policy", "same-origin")
			h.ServeHTTP(w, r)
		}
	}
	mux.Customer("GET /{$}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})))
	mux.Customer("GET /ui/", secure(http.StripPrefix("/ui/", files)))
	mux.Customer("GET /ui/config.json", secure(http.HandlerFunc(a.pageConfig)))
}

// pageItem is one catalog entry the tracking page offers.
type pageItem struct {
	ItemID string `json:"itemId"`
	Name   string `json:"name"`
}

// loadPageCatalog reads the items the page offers once, at start-up, so that a wrong
// QUERY_CATALOG_FILE stops the service with its cause instead of breaking the page later.
func loadPageCatalog(path string) ([]pageItem, error) {
	items, err := catalog.Load(path)
	if err != nil {
		return nil, fmt.Errorf("QUERY_CATALOG_FILE: %w", err)
	}
	out := make([]pageItem, len(items))
	for i, it := range items {
		out[i] = pageItem{it.ItemID, it.Name}
	}
	return out, nil
}

// pageConfig tells the page where to post orders and which items the seeded catalog has.
func (a *api) pageConfig(w http.ResponseWriter, _ *http.Request) {
	items := a.catalog
	if items == nil {
		items = []pageItem{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"orderApi": strings.TrimRight(a.orderAPI, "/"), "items": items})
}

// contentSecurityPolicy allows only the page's own files and connections to query-api and to
// order-service's origin: no inline script, no third-party anything.
func contentSecurityPolicy(orderAPI string) string {
	connect := "'self'"
	if u, err := url.Parse(orderAPI); err == nil && u.Scheme != "" && u.Host != "" {
		connect += " " + u.Scheme + "://" + u.Host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " + connect +
		"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}
