package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A row of the results table in docs/reliability.md, filled in by each scenario as it runs.
type row struct {
	Scenario   string
	Sent       string // orders sent / accepted by the load generator
	Window     string // what was done and for how long
	Recovery   string // from the end of the fault until a new order completed end to end
	Invariants string
	DLQ        string
}

var results = struct {
	sync.Mutex
	rows []row
}{}

func record(r row) {
	results.Lock()
	defer results.Unlock()
	results.rows = append(results.rows, r)
}

const (
	beginMarker = "<!-- chaos-results:begin (written by test/chaos; do not edit) -->"
	endMarker   = "<!-- chaos-results:end -->"
)

// TestMain writes the table of the scenarios that ran to .cache/chaos/results.md and, with
// CHAOS_UPDATE_DOCS=1 (make chaos), into docs/reliability.md between the markers.
func TestMain(m *testing.M) {
	code := m.Run()
	stopClusterIfStarted()
	if len(results.rows) > 0 {
		if err := writeResults(); err != nil {
			fmt.Fprintln(os.Stderr, "chaos results:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

func table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s on a %d-core machine, all servers and services co-located, load seed %d.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), numCPU(), seed)
	b.WriteString("| Scenario | Orders sent / accepted | Fault window | Time to recover | Invariants | DLQ contents |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range results.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.Sent, r.Window, r.Recovery, r.Invariants, r.DLQ)
	}
	return b.String()
}

func writeResults() error {
	out := filepath.Join("..", "..", ".cache", "chaos", "results.md")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	t := table()
	if err := os.WriteFile(out, []byte(t), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "chaos results written to %s\n%s", out, t)
	if os.Getenv("CHAOS_UPDATE_DOCS") != "1" {
		return nil
	}
	doc := filepath.Join("..", "..", "docs", "reliability.md")
	b, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s lacks the result markers", doc)
	}
	s = s[:i+len(beginMarker)] + "\n" + t + s[j:]
	return os.WriteFile(doc, []byte(s), 0o644)
}
