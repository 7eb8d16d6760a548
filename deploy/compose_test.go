// Package deploy holds the checks that keep the container and cluster manifests in step with the
// code; no Docker engine or cluster is needed.
package deploy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	composecli "github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/cli"
	"github.com/orderflow/orderflow/internal/platform/httpx"
)

// ports of DESIGN.md §1.
var ports = map[string]int{"query-api": 8080, "order-service": 8081, "payment-service": 8082,
	"inventory-service": 8083, "delivery-service": 8084}

// httpAddrVar names each service's listen-address variable.
var httpAddrVar = map[string]string{"query-api": "QUERY_HTTP_ADDR", "order-service": "ORDER_HTTP_ADDR",
	"payment-service": "PAYMENT_HTTP_ADDR", "inventory-service": "INVENTORY_HTTP_ADDR", "delivery-service": "DELIVERY_HTTP_ADDR"}

// servedPaths are the probe paths every service serves (TestServedPathsAreServed asks the real
// handler).
var servedPaths = []string{"/healthz", "/readyz", "/health", "/metrics", "/info"}

func TestServedPathsAreServed(t *testing.T) {
	mux := httpx.NewMux(httpx.GuardConfig{})
	httpx.Ops{Health: httpx.NewHealth(), Gatherer: prometheus.NewRegistry()}.Register(mux)
	for _, p := range servedPaths {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p, nil))
		if w.Code != http.StatusOK {
			t.Errorf("GET %s answered %d on a healthy service", p, w.Code)
		}
	}
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	file := filepath.Join("compose", "compose.yml")
	// Only the project's .env: the developer's shell must not change what is checked.
	opts, err := composecli.NewProjectOptions([]string{file}, composecli.WithWorkingDirectory("compose"),
		composecli.WithEnvFiles(filepath.Join("compose", ".env")), composecli.WithDotEnv, composecli.WithName("orderflow"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose file does not load: %v", err)
	}
	return p
}

func TestComposeRunsEveryServiceOnItsPort(t *testing.T) {
	p := loadCompose(t)
	for name := range cli.Services {
		svc, ok := p.Services[name]
		if !ok {
			t.Errorf("compose lacks service %s", name)
			continue
		}
		if !slices.Equal([]string(svc.Command), []string{name}) {
			t.Errorf("%s: command %v, want [%s]", name, svc.Command, name)
		}
		port := ports[name]
		if len(svc.Ports) != 1 || svc.Ports[0].Target != uint32(port) || svc.Ports[0].Published != strconv.Itoa(port) {
			t.Errorf("%s: ports %+v, want %d:%d", name, svc.Ports, port, port)
		}
		addr := svc.Environment[httpAddrVar[name]]
		if addr == nil {
			t.Errorf("%s: %s not set (the default listens on loopback only)", name, httpAddrVar[name])
		} else if host, p, _ := net.SplitHostPort(*addr); host != "0.0.0.0" || p != strconv.Itoa(port) {
			t.Errorf("%s: %s=%s, want 0.0.0.0:%d", name, httpAddrVar[name], *addr, port)
		}
		checkProbe(t, name, svc.HealthCheck, port)
		if svc.Restart == "" || svc.Restart == "no" {
			t.Errorf("%s: no restart policy", name)
		}
		if !svc.ReadOnly {
			t.Errorf("%s: root filesystem not read-only", name)
		}
		for dep, cond := range map[string]string{"postgres": "service_healthy", "kafka": "service_healthy", "init": "service_completed_successfully"} {
			if d, ok := svc.DependsOn[dep]; !ok || d.Condition != cond {
				t.Errorf("%s: depends_on %s %+v, want condition %s", name, dep, d, cond)
			}
		}
	}
	for name, dep := range map[string]string{"payment-service": "redis", "query-api": "cassandra"} {
		if d := p.Services[name].DependsOn[dep]; d.Condition != "service_healthy" {
			t.Errorf("%s must wait for a healthy %s", name, dep)
		}
	}
}

func checkProbe(t *testing.T, name string, hc *types.HealthCheckConfig, port int) {
	t.Helper()
	if hc == nil || len(hc.Test) != 4 || hc.Test[0] != "CMD" || hc.Test[2] != "probe" {
		t.Errorf("%s: health check %+v, want [CMD orderflow probe URL]", name, hc)
		return
	}
	if _, ok := cli.Services[filepath.Base(hc.Test[1])]; ok || filepath.Base(hc.Test[1]) != "orderflow" {
		t.Errorf("%s: health check runs %s", name, hc.Test[1])
	}
	u, err := url.Parse(hc.Test[3])
	if err != nil || u.Port() != strconv.Itoa(port) || !slices.Contains(servedPaths, u.Path) {
		t.Errorf("%s: health check URL %s does not reach a served path on port %d", name, hc.Test[3], port)
	}
}

func TestComposeEnvironmentIsReadByTheCode(t *testing.T) {
	p := loadCompose(t)
	for name := range cli.Services {
		// The environment includes the shared .env, so a variable may be another service's.
		for k := range p.Services[name].Environment {
			if !anyReads(k) {
				t.Errorf("%s: environment variable %s is read by no service", name, k)
			}
		}
		if len(p.Services[name].Environment) < 10 {
			t.Errorf("%s: environment %v lacks the shared .env", name, p.Services[name].Environment)
		}
	}
	env, err := os.ReadFile(filepath.Join("compose", ".env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(env), "\n") {
		k, _, ok := strings.Cut(line, "=")
		if ok && !strings.HasPrefix(k, "#") && !anyReads(k) {
			t.Errorf(".env sets %s, which no service reads", k)
		}
	}
	for _, s := range []string{"postgres", "redis", "kafka", "cassandra"} {
		svc, ok := p.Services[s]
		if !ok || svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 {
			t.Errorf("server %s missing or without a health check", s)
		}
		if len(svc.Volumes) == 0 || svc.Volumes[0].Type != types.VolumeTypeVolume {
			t.Errorf("server %s keeps no named volume", s)
		}
	}
	c := p.Services["cassandra"].Environment
	if v := c["CASSANDRA_DC"]; v == nil || *v != "dc1" || *c["CASSANDRA_ENDPOINT_SNITCH"] != "GossipingPropertyFileSnitch" {
		t.Error("cassandra must report data center dc1 through GossipingPropertyFileSnitch")
	}
	if init := p.Services["init"]; !slices.Equal([]string(init.Command), []string{"init"}) {
		t.Errorf("init step runs %v, want orderflow init", init.Command)
	}
	if v := p.Services["kafka"].Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]; v == nil || *v != "false" {
		t.Error("kafka must not auto-create topics (the init step creates them with their partitions)")
	}
}

// anyReads reports whether some service reads the variable.
func anyReads(name string) bool {
	for s := range cli.Services {
		if vars, _ := cli.Variables(s); vars[name] {
			return true
		}
	}
	return false
}
