package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/testkit"
)

// openAPIDoc names each service's OpenAPI document (docs/openapi/<name>.yaml) by its prefix.
var openAPIDoc = map[string]string{"ORDER": "order-service", "INVENTORY": "inventory-service", "PAYMENT": "payment-service",
	"DELIVERY": "delivery-service", "QUERY": "query-api"}

// platformRoutes are the only routes open to anyone without a rate limit: probes, metrics, info.
var platformRoutes = []string{"GET /actuator/health", "GET /actuator/info", "GET /actuator/prometheus", "GET /health",
	"GET /healthz", "GET /info", "GET /metrics", "GET /readyz"}

// debugRoutes are the operator routes outside /api (Go's profiler, PPROF_ENABLE).
var debugRoutes = []string{"GET /debug/pprof/", "GET /debug/pprof/profile", "GET /debug/pprof/trace"}

// served is one route of one service as GET /info reports it.
type served struct {
	service string // its OpenAPI document's name
	prefix  string
	httpx.Route
}

// servedRoutes asks every service of sys for its routes.
func servedRoutes(t *testing.T, client *http.Client, sys *testkit.System) []served {
	t.Helper()
	var out []served
	for prefix, name := range openAPIDoc {
		resp, err := client.Get("http://" + sys.Addrs[prefix] + "/info")
		if err != nil {
			t.Fatal(err)
		}
		var info httpx.BuildInfo
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err != nil || len(info.Routes) == 0 {
			t.Fatalf("%s /info: %v, %d routes", name, err, len(info.Routes))
		}
		for _, r := range info.Routes {
			out = append(out, served{name, prefix, r})
		}
	}
	slices.SortFunc(out, func(a, b served) int { return strings.Compare(a.service+a.Pattern, b.service+b.Pattern) })
	return out
}

// documentedAccess reads the access every /api operation of every document declares: operator
// when its security names the admin scheme, customer otherwise.
func documentedAccess(t *testing.T) map[string]httpx.Access {
	t.Helper()
	out := map[string]httpx.Access{}
	for _, name := range openAPIDoc {
		doc, err := openapi3.NewLoader().LoadFromFile(filepath.Join("..", "..", "docs", "openapi", name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				sec := doc.Security
				if op.Security != nil {
					sec = *op.Security
				}
				access := httpx.Customer
				for _, req := range sec {
					if _, ok := req["admin"]; ok {
						access = httpx.Operator
					}
				}
				out[name+" "+method+" "+path] = access
			}
		}
	}
	return out
}

// samplePath turns a pattern into a path a request can use; every wildcard needs a sample here,
// so a route with a new one fails loudly instead of going untested.
func samplePath(t *testing.T, pattern string) string {
	t.Helper()
	_, path, _ := strings.Cut(pattern, " ")
	samples := map[string]string{"{orderId}": uuid.NewString(), "{itemId}": "SKU-001", "{topic}": "dlq.order-events", "{$}": ""}
	path = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllStringFunc(path, func(w string) string {
		s, ok := samples[w]
		if !ok {
			t.Fatalf("%s: no sample value for %s", pattern, w)
		}
		return s
	})
	if strings.HasSuffix(path, "/") && path != "/" {
		path += map[string]string{"/ui/": "app.js"}[path] // a subtree: one file in it
	}
	// Profiles run for 30 s unless told otherwise.
	return path + map[string]string{"/debug/pprof/profile": "?seconds=1", "/debug/pprof/trace": "?seconds=1"}[path]
}

// sampleBody is a valid body for the routes that take one.
var sampleBody = map[string]string{
	"POST /api/orders":             `{"customerId":"access-test","currency":"EUR","items":[{"itemId":"SKU-001","quantity":1,"unitPrice":1.00}]}`,
	"PUT /api/inventory/{itemId}":  `{"available":500}`,
	"POST /api/dlq/{topic}/replay": `{"eventIds":["` + uuid.NewString() + `"]}`,
}

// TestEveryRouteFromAnotherAddress runs the five services with ADMIN_TOKEN set inside a network
// namespace, listening on a veth address, with every optional route on (PPROF_ENABLE), and calls every route every service serves from
// non-loopback addresses of the host's end: operator routes answer 401 without a token and with
// a wrong one and do their work with the right one; customer routes answer 429 after the burst;
// only the platform routes are neither. The access each route has must be the one its OpenAPI
// document declares, and docs/security.md's route table must list exactly these routes.
func TestEveryRouteFromAnotherAddress(t *testing.T) {
	testkit.Integration(t)
	if why := testkit.NetnsUnavailable(); why != "" {
		t.Fatal(why)
	}
	const token, burst = "access-test-token", 3
	ns := testkit.NewNetns(t)
	ns.ForwardInto(t, "127.0.0.1:5432", "127.0.0.1:6379", "127.0.0.1:9092", "127.0.0.1:9042")
	nsIP, hostIPs := ns.Veth(t, 16)
	sys := testkit.StartSystemIn(t, ns, nsIP, "ADMIN_TOKEN="+token, "RATE_LIMIT_PER_SECOND=1",
		fmt.Sprintf("RATE_LIMIT_BURST=%d", burst), "LOG_LEVEL=warn", "PPROF_ENABLE=true")
	next := 0
	clientFrom := func() (*http.Client, string) {
		if next == len(hostIPs) {
			t.Fatal("more customer routes than source addresses: raise Veth's count")
		}
		ip := hostIPs[next]
		next++
		tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}, ip
	}
	opClient, _ := clientFrom()
	routes := servedRoutes(t, opClient, sys)
	docs := documentedAccess(t)
	call := func(c *http.Client, s served, auth string) (*http.Response, []byte) {
		t.Helper()
		method, _, _ := strings.Cut(s.Pattern, " ")
		var body io.Reader
		if b, ok := sampleBody[s.Pattern]; ok {
			body = strings.NewReader(b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+sys.Addrs[s.prefix]+samplePath(t, s.Pattern), body)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", s.service, s.Pattern, err)
		}
		defer resp.Body.Close()
		var b []byte
		if resp.Header.Get("Content-Type") != "text/event-stream" { // a stream stays open: status only
			b, _ = io.ReadAll(resp.Body)
		}
		return resp, b
	}
	isProblem := func(resp *http.Response, b []byte, status int) bool {
		var p httpx.Problem
		return resp.Header.Get("Content-Type") == "application/problem+json" && json.Unmarshal(b, &p) == nil && p.Status == status
	}
	counts := map[httpx.Access]int{}
	for _, s := range routes {
		t.Run(s.service+" "+s.Pattern, func(t *testing.T) {
			want := httpx.Customer
			if _, path, _ := strings.Cut(s.Pattern, " "); strings.HasPrefix(path, "/api/") {
				documented, ok := docs[s.service+" "+s.Pattern]
				if !ok {
					t.Fatalf("served but not in docs/openapi/%s.yaml", s.service)
				}
				want = documented
			} else if slices.Contains(platformRoutes, s.Pattern) {
				want = httpx.Platform
			} else if slices.Contains(debugRoutes, s.Pattern) {
				want = httpx.Operator
			}
			if s.Access != want {
				t.Fatalf("registered as %s, but its documentation makes it %s", s.Access, want)
			}
			counts[s.Access]++
			switch s.Access {
			case httpx.Operator:
				for _, auth := range []string{"", "Bearer wrong-" + token, "Basic " + token} {
					resp, b := call(opClient, s, auth)
					if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || !isProblem(resp, b, 401) {
						t.Errorf("Authorization %q: %d %s, want 401 with WWW-Authenticate and a problem body", auth, resp.StatusCode, b)
					}
				}
				resp, b := call(opClient, s, "Bearer "+token)
				if c := resp.StatusCode; c >= 500 || c == 401 || c == 403 || c == 429 {
					t.Errorf("with the token: %d %s, want the route's own 2xx or 4xx", c, b)
				}
			case httpx.Customer:
				c, ip := clientFrom()
				var codes []int
				for len(codes) < burst+3 {
					resp, b := call(c, s, "")
					codes = append(codes, resp.StatusCode)
					if resp.StatusCode == http.StatusTooManyRequests {
						if resp.Header.Get("Retry-After") == "" || !isProblem(resp, b, 429) {
							t.Errorf("429 without Retry-After or a problem body: %v %s", resp.Header, b)
						}
						break
					}
					if resp.StatusCode >= 500 {
						t.Errorf("%d %s", resp.StatusCode, b)
					}
				}
				if len(codes) <= burst || codes[len(codes)-1] != http.StatusTooManyRequests || slices.Contains(codes[:burst], 429) {
					t.Errorf("from %s: statuses %v, want %d answers then 429", ip, codes, burst)
				}
			case httpx.Platform:
				for range burst + 2 {
					if resp, b := call(opClient, s, ""); resp.StatusCode == 401 || resp.StatusCode == 403 || resp.StatusCode == 429 {
						t.Errorf("platform route refused: %d %s", resp.StatusCode, b)
					}
				}
			}
		})
	}
	t.Logf("routes: %d operator, %d customer, %d platform", counts[httpx.Operator], counts[httpx.Customer], counts[httpx.Platform])
	if counts[httpx.Operator] == 0 || counts[httpx.Customer] == 0 {
		t.Fatalf("no operator or no customer route was tested: %v", counts)
	}
	checkSecurityDoc(t, routes)

	// Without ADMIN_TOKEN the operator routes answer loopback clients only: from another address
	// they are refused (403), so the loopback exemption cannot hide a missing guard either.
	// (The first system stops first: ports chosen on the host could repeat inside the namespace.)
	sys.Procs["ORDER"].Stop()
	sys = testkit.StartSystemIn(t, ns, nsIP, "LOG_LEVEL=warn", "PPROF_ENABLE=true")
	refused := 0
	for _, s := range servedRoutes(t, opClient, sys) {
		if s.Access != httpx.Operator {
			continue
		}
		if resp, b := call(opClient, s, ""); resp.StatusCode != http.StatusForbidden || !isProblem(resp, b, 403) {
			t.Errorf("%s %s without ADMIN_TOKEN, from %s: %d %s, want 403", s.service, s.Pattern, hostIPs[0], resp.StatusCode, b)
		}
		refused++
	}
	if refused != counts[httpx.Operator] {
		t.Errorf("without a token %d operator routes, with one %d", refused, counts[httpx.Operator])
	}
}

// checkSecurityDoc compares docs/security.md's generated route table with the served routes
// (UPDATE_DOCS=1 rewrites it).
func checkSecurityDoc(t *testing.T, routes []served) {
	t.Helper()
	const begin, end = "<!-- routes:begin (generated by TestEveryRouteFromAnotherAddress; UPDATE_DOCS=1 rewrites it) -->", "<!-- routes:end -->"
	who := map[httpx.Access]string{
		httpx.Operator: "operators | `Authorization: Bearer <ADMIN_TOKEN>` (unset: loopback clients only)",
		httpx.Customer: "customers | open, rate-limited per client address",
		httpx.Platform: "the platform | open, no secrets",
	}
	var b bytes.Buffer
	b.WriteString(begin + "\n\n| route | service | who | protection |\n|---|---|---|---|\n")
	for _, s := range routes {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Pattern, s.service, who[s.Access])
	}
	b.WriteString("\n" + end)
	path := filepath.Join("..", "..", "docs", "security.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("docs/security.md has no generated route table (%q … %q)", begin, end)
	}
	current := doc[i : j+len(end)]
	if bytes.Equal(current, b.Bytes()) {
		return
	}
	if os.Getenv("UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, slices.Concat(doc[:i], b.Bytes(), doc[j+len(end):]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("docs/security.md's route table is stale: run UPDATE_DOCS=1 ORDERFLOW_INTEGRATION=1 go test ./test/integration -run EveryRoute\nwant:\n%s", b.Bytes())
}
