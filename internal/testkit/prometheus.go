package testkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Prometheus runs the real Prometheus (Debian's package) scraping sys's five services every second
// with the alert rules of deploy/observability loaded and evaluated every second, until the test
// ends. It returns the server's base URL.
func Prometheus(t testing.TB, sys *System) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed; scripts/infra up installs it (Debian package prometheus)")
	}
	_, file, _, _ := runtime.Caller(0)
	rules := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "observability", "alerts.yml")
	var targets []string
	for _, svc := range Services {
		targets = append(targets, fmt.Sprintf(`{targets: ["%s"], labels: {application: %s}}`, sys.Addrs[svc.Prefix], svc.Cmd))
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\nscrape_configs:\n  - job_name: orderflow\n    honor_labels: true\n    static_configs: [%s]\n",
		rules, strings.Join(targets, ", "))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- output of prometheus ---\n%s", tailString(out.String(), 4000))
		}
	})
	api := "http://" + addr
	Eventually(t, 30*time.Second, "Prometheus ready", func() bool {
		resp, err := http.Get(api + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return api
}

// PromQuery runs an instant query against the Prometheus at api and returns the series it found.
func PromQuery(api, expr string) ([]PromSeries, error) {
	resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []PromSeries `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", expr, r.Error)
	}
	return r.Data.Result, nil
}

// PromSeries is one series of an instant query's answer.
type PromSeries struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // [unix time, "value"]
}
