package httpx

import (
	"context"
	"crypto/rand"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

type requestIDKey struct{}

// RequestID returns the id Metrics.Wrap gave the request ("" outside one).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestIDs makes ids unique per process without a random read per request: a random prefix
// chosen at start and a counter.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs { return &requestIDs{prefix: rand.Text()[:10]} }

// of returns the request's id: the client's X-Request-Id when it is a plausible id (so a proxy's
// id carries through), else a new one.
func (g *requestIDs) of(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); plausibleID(id) {
		return id
	}
	return g.prefix + "-" + strconv.FormatUint(g.n.Add(1), 36)
}

// plausibleID: 1 to 64 characters of letters, digits, '-', '_' and '.' — nothing that could
// forge a log field or a header.
func plausibleID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return !strings.ContainsFunc(s, func(c rune) bool {
		return (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.'
	})
}
