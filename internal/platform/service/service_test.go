package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestRunBindsBeforeWiring: a port in use fails at once, before any dependency is waited for, and
// the port is held while wire runs, so a request made then is answered once the service is up.
func TestRunBindsBeforeWiring(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	wired := false
	err = Run(context.Background(), "svc", io.Discard, Common{}, busy.Addr().String(), func(context.Context, *Service) error {
		wired = true
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "listen") || wired {
		t.Fatalf("port in use: err %v, wire called %v", err, wired)
	}

	addr := testkit.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inWire, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, "svc", io.Discard, Common{}, addr, func(context.Context, *Service) error {
			close(inWire)
			<-release
			return nil
		})
	}()
	<-inWire
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatal("the port is not held while wire runs")
	}
	answered := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/healthz", addr))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		answered <- err
	}()
	close(release)
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("request made while wiring: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request made while wiring was not answered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestLoopbackOnly: the ADMIN_TOKEN warning is for listeners others can reach.
func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.5:80": false, "garbage": false} {
		if got := loopbackOnly(addr); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
}

type guardOnly struct{ Common }

// TestInKubernetesLoopbackIsNotTrusted: in a pod (KUBERNETES_SERVICE_HOST set) a service without
// ADMIN_TOKEN refuses to start, and with it a request from 127.0.0.6 (where Istio's sidecar
// forwards from) gets no operator access without the token.
func TestInKubernetesLoopbackIsNotTrusted(t *testing.T) {
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
	getenv := func(k string) string { return env[k] }
	configure := func(e *config.Env) guardOnly { return guardOnly{LoadCommon(e)} }
	cfg, err := Load[guardOnly](getenv, configure)
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), "svc", io.Discard, cfg.Common, "127.0.0.1:0", func(context.Context, *Service) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "ADMIN_TOKEN (or ADMIN_TOKEN_FILE) is required") {
		t.Fatalf("in Kubernetes without ADMIN_TOKEN: %v, want a refusal naming ADMIN_TOKEN", err)
	}
	env["ADMIN_TOKEN"] = "s3cret"
	if cfg, err = Load[guardOnly](getenv, configure); err != nil {
		t.Fatal(err)
	}
	if !cfg.Guard.DistrustLoopback || cfg.Guard.ExemptLoopback {
		t.Fatalf("in Kubernetes: %+v, want loopback distrusted and not exempt from the rate limit", cfg.Guard)
	}
	addr := testkit.FreeAddr(t)
	runInBackground(t, cfg.Common, addr, func(s *Service) {
		s.Mux.Operator("GET /api/secret", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	})
	sidecar := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}}).DialContext}}
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/secret", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return call(t, sidecar, req)
	}
	if code, body := get(""); code != http.StatusUnauthorized || !strings.Contains(body, "ADMIN_TOKEN") {
		t.Errorf("from 127.0.0.6 without the token: %d %s, want 401 with a problem naming ADMIN_TOKEN", code, body)
	}
	if code, body := get("Bearer s3cret"); code != http.StatusOK {
		t.Errorf("from 127.0.0.6 with the token: %d %s", code, body)
	}
}

// TestOpsPort: with an ops address, probes, metrics, /info and profiles answer there and not on the
// API's port, whose routes /info still lists.
func TestOpsPort(t *testing.T) {
	api, ops := testkit.FreeAddr(t), testkit.FreeAddr(t)
	runInBackground(t, Common{OpsAddr: ops, Pprof: true}, api, func(s *Service) {
		s.Mux.Customer("GET /api/thing", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	})
	get := func(addr, path string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		return call(t, http.DefaultClient, req)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/health", "/debug/pprof/"} {
		if code, _ := get(ops, path); code != http.StatusOK {
			t.Errorf("ops port %s: %d", path, code)
		}
		if code, _ := get(api, path); code != http.StatusNotFound {
			t.Errorf("API port %s: %d, want 404 (ops endpoints live on the ops port)", path, code)
		}
	}
	if code, _ := get(api, "/api/thing"); code != http.StatusOK {
		t.Errorf("API route on the API port: %d", code)
	}
	if _, info := get(ops, "/info"); !strings.Contains(info, "GET /api/thing") || !strings.Contains(info, "GET /metrics") {
		t.Errorf("/info on the ops port does not list both ports' routes: %s", info)
	}
}

// runInBackground runs a service named svc on addr with c, letting routes register its routes,
// until the end of the test, and fails the test if it does not stop cleanly.
func runInBackground(t *testing.T, c Common, addr string, routes func(*Service)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, "svc", io.Discard, c, addr, func(_ context.Context, s *Service) error {
			routes(s)
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// call sends req with c, retrying while the service is still starting, and returns the status and body.
func call(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	for range 50 {
		if resp, err = c.Do(req); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTrustedProxiesSetting: addresses become single-address prefixes (IPv4-mapped ones as IPv4),
// prefixes are kept masked, and anything else is refused by name.
func TestTrustedProxiesSetting(t *testing.T) {
	load := func(v string) (Common, error) {
		e := config.New(func(k string) string { return map[string]string{"TRUSTED_PROXIES": v}[k] })
		return LoadCommon(e), e.Err()
	}
	c, err := load("10.1.2.3/16, 127.0.0.6, ::ffff:10.2.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.Guard.TrustedProxies); got != "[10.1.0.0/16 127.0.0.6/32 10.2.0.1/32]" {
		t.Errorf("TRUSTED_PROXIES parsed as %s", got)
	}
	if _, err := load("10.0.0.0/8, proxy.local"); err == nil || !strings.Contains(err.Error(), `"proxy.local"`) {
		t.Errorf("a host name in TRUSTED_PROXIES: %v, want an error naming it", err)
	}
}
