package httpx

import (
	"net/http"
	"slices"
	"sync"
)

// Mux is an http.ServeMux that remembers its patterns, so a service can say which routes it serves
// (GET /info lists them; a test compares them with the OpenAPI documents).
type Mux struct {
	*http.ServeMux
	mu       sync.Mutex
	patterns []string
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.record(pattern)
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers f for pattern.
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.record(pattern)
	m.ServeMux.HandleFunc(pattern, f)
}

func (m *Mux) record(p string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.patterns = append(m.patterns, p)
}

// Patterns returns the registered patterns, sorted.
func (m *Mux) Patterns() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.patterns)
	slices.Sort(out)
	return out
}
