package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/test/harness"
)

// TestDashboardQueriesReturnDataFromPrometheus runs the real Prometheus (Debian's package) scraping
// the five services every second, with the alert rules loaded, drives a short load, then executes
// every panel query of deploy/observability/dashboard.json through Prometheus's HTTP API: each must
// return data (a panel with a typo, or a metric nobody exports, fails).
func TestDashboardQueriesReturnDataFromPrometheus(t *testing.T) {
	e2e(t)
	ctx := testkit.Context(t, 5*time.Minute)
	sys := start(t, false, "INVENTORY_CATALOG_FILE=") // the loadgen orders the built-in catalog
	api := testkit.Prometheus(t, sys)

	res := harness.Load(ctx, t, sys, 20, 20*time.Second, 7)
	if res.Unfinished != 0 || res.Accepted == 0 {
		t.Fatalf("load: accepted %d unfinished %d", res.Accepted, res.Unfinished)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "observability", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	query := func(expr string) (int, error) {
		r, err := testkit.PromQuery(api, expr)
		return len(r), err
	}
	// Broker-side lag is read every 15 s: give every panel one more chance after that.
	empty := map[string]string{}
	testkit.Eventually(t, 40*time.Second, "every dashboard panel to return data", func() bool {
		clear(empty)
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				n, err := query(tg.Expr)
				switch {
				case err != nil:
					empty[p.Title] = err.Error()
				case n == 0:
					empty[p.Title] = "no data: " + tg.Expr
				}
			}
		}
		return len(empty) == 0
	})
	if len(empty) > 0 {
		t.Fatalf("panels without data: %v", empty)
	}
	// The alert rules loaded into the real server and evaluate without error.
	resp, err := http.Get(api + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rr struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError string
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&rr)
	n := 0
	for _, g := range rr.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	if n != 7 {
		t.Fatalf("%d rules loaded, want 7", n)
	}
	t.Logf("%d panels returned data; %d alert rules loaded", len(dash.Panels), n)
}
