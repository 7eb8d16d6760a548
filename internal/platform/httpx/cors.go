package httpx

import (
	"net/http"
	"slices"
	"strings"
)

// CORS lets pages from the listed origins call an API from a browser. With no origins (the
// default) it adds nothing, and browsers keep blocking cross-origin calls.
type CORS struct {
	Origins []string // exact origins, e.g. http://127.0.0.1:8080
	Methods []string
	Headers []string // request headers a page may send
}

func (c CORS) allowed(r *http.Request) (string, bool) {
	o := r.Header.Get("Origin")
	return o, o != "" && slices.Contains(c.Origins, o)
}

// Wrap adds the CORS response headers to h's answers for allowed origins.
func (c CORS) Wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o, ok := c.allowed(r); ok {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Set("Vary", "Origin")
			w.Header().Set("Access-Control-Expose-Headers", "Location, Idempotent-Replayed")
		}
		h(w, r)
	}
}

// Preflight answers a browser's OPTIONS request: 204 with the allowed methods and headers for an
// allowed origin, 403 otherwise.
func (c CORS) Preflight(w http.ResponseWriter, r *http.Request) {
	o, ok := c.allowed(r)
	if !ok {
		WriteProblem(w, r, NewProblem(http.StatusForbidden, "cross-origin requests from this origin are not allowed"))
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", o)
	h.Set("Vary", "Origin")
	h.Set("Access-Control-Allow-Methods", strings.Join(c.Methods, ", "))
	h.Set("Access-Control-Allow-Headers", strings.Join(c.Headers, ", "))
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}
