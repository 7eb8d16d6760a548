package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/orderflow/orderflow/internal/cli"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestAlertRulesWithPromtool: Prometheus accepts the configuration and the rules, and every rule's
// unit tests in alerts_test.yml pass (`promtool test rules`).
func TestAlertRulesWithPromtool(t *testing.T) {
	testkit.Integration(t)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed; scripts/infra up installs it (Debian package prometheus)")
	}
	for _, args := range [][]string{{"check", "config", "prometheus.yml"}, {"test", "rules", "alerts_test.yml"},
		{"check", "config", "--syntax-only", "../compose/prometheus.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "observability"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertRulesNameRealMetrics: every metric an alert reads is one the services register (a
// typo would make a rule that never fires, which promtool cannot tell).
func TestAlertRulesNameRealMetrics(t *testing.T) {
	names := registeredMetricNames(t)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	b, err := os.ReadFile(filepath.Join("observability", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	selector := regexp.MustCompile(`\b([a-z][a-z0-9_]*)\s*[\{\[]`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range selector.FindAllStringSubmatch(r.Expr, -1) {
				name := m[1]
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
				if name != "up" && !names[name] && !names[base] {
					t.Errorf("alert %s reads %s, which no service registers", r.Alert, name)
				}
				n++
			}
		}
	}
	if n < 7 {
		t.Fatalf("found %d metric selectors in the rules; the parsing is broken", n)
	}
}

// registeredMetricNames collects the snake_case string literals of the services' code: every
// metric name is one (collectors' Name options and the helpers that build them).
func registeredMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`"([a-z][a-z0-9]*(?:_[a-z0-9]+)+)"`)
	err := filepath.WalkDir(filepath.Join("..", "internal"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestComposeProvisionsObservability: compose runs Prometheus with the tested rules and a scrape
// target for every service on its port, and Grafana with the data source and the dashboard; every
// file they mount exists.
func TestComposeProvisionsObservability(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"prometheus", "grafana"} {
		svc, ok := p.Services[name]
		if !ok {
			t.Fatalf("compose lacks %s", name)
		}
		for _, v := range svc.Volumes {
			if v.Type != "bind" {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which does not exist: %v", name, v.Source, err)
			}
		}
	}
	var mounts []string
	for _, svcName := range []string{"prometheus", "grafana"} {
		for _, v := range p.Services[svcName].Volumes {
			mounts = append(mounts, filepath.Base(v.Source)+"→"+v.Target)
		}
	}
	for _, want := range []string{"alerts.yml→/etc/prometheus/alerts.yml", "dashboard.json→/var/lib/grafana/dashboards/orderflow.json"} {
		if !slices.Contains(mounts, want) {
			t.Errorf("mounts %v lack %s", mounts, want)
		}
	}
	b, err := os.ReadFile(filepath.Join("compose", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, port := range ports {
		if !strings.Contains(string(b), fmt.Sprintf(`"%s:%d"`, name, port)) {
			t.Errorf("compose's prometheus.yml does not scrape %s:%d", name, port)
		}
	}
}

// TestPrometheusOperatorObjects keeps overlays/prod/monitoring.yaml, the Prometheus Operator's
// ServiceMonitor and PrometheusRule, generated from the tested rules (UPDATE_DOCS=1 rewrites it):
// the rule groups are alerts.yml's, and the scrape gives the job label the rules select.
func TestPrometheusOperatorObjects(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join("observability", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var groups struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.Unmarshal(rules, &groups); err != nil {
		t.Fatal(err)
	}
	sel := map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/part-of": "orderflow"}}
	monitor := map[string]any{"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
		"metadata": map[string]any{"name": "orderflow", "labels": map[string]any{"release": "prometheus"}},
		"spec": map[string]any{"selector": sel, "jobLabel": "app.kubernetes.io/part-of", // job="orderflow", as the rules expect
			"endpoints": []any{map[string]any{"port": "ops", "path": "/metrics", "interval": "15s"}}}}
	rule := map[string]any{"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
		"metadata": map[string]any{"name": "orderflow", "labels": map[string]any{"release": "prometheus"}},
		"spec":     map[string]any{"groups": groups.Groups}}
	var b strings.Builder
	b.WriteString("# Generated from deploy/observability/alerts.yml by TestPrometheusOperatorObjects (deploy/observability_test.go,\n" +
		"# UPDATE_DOCS=1 rewrites it): the Prometheus Operator scrapes the five services and loads the tested rules.\n" +
		"# The label release: prometheus is what kube-prometheus-stack's default selectors pick.\n")
	for i, obj := range []any{monitor, rule} {
		y, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	path := filepath.Join("k8s", "overlays", "prod", "monitoring.yaml")
	if os.Getenv("UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != b.String() {
		t.Fatalf("%s is stale (or missing: %v): run UPDATE_DOCS=1 go test ./deploy -run PrometheusOperatorObjects", path, err)
	}
	// The Services carry the label the ServiceMonitor selects and name their port http.
	o := build(t, "prod")
	for name := range cli.Services {
		s := o.services[name]
		if s.Labels["app.kubernetes.io/part-of"] != "orderflow" || !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "ops" }) {
			t.Errorf("Service %s: labels %v ports %v: the ServiceMonitor would not scrape it", name, s.Labels, s.Spec.Ports)
		}
	}
}
