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

	"sigs.k8s.io/yaml"

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
