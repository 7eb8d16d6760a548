package query

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

func TestNextGeneration(t *testing.T) {
	for _, c := range []struct{ serving, want string }{
		{"rm", "rm_g1"}, {"rm_g1", "rm_g2"}, {"rm_g9", "rm_g10"}, {"rm_g41", "rm_g42"},
	} {
		if got := nextGeneration("rm", c.serving); got != c.want {
			t.Errorf("nextGeneration(rm, %s) = %s, want %s", c.serving, got, c.want)
		}
	}
	g := generations{Serving: "a", Building: "b"}
	if w := g.writes(); len(w) != 2 || w[0] != "a" || w[1] != "b" {
		t.Errorf("writes of %+v: %v", g, w)
	}
}

// TestRebuildRefusesAnUnfinishedOne: a generation left "building" by a rebuild that died is not
// taken over silently: the next rebuild refuses and names --force; with --force it drops the
// leftover and builds the next generation.
func TestRebuildRefusesAnUnfinishedOne(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 3*time.Minute)
	base := testkit.CassandraConfig(t).Keyspace
	st := newCassandraKeyspace(t, base)
	// What a rebuild killed after step 1 leaves behind.
	leftover := nextGeneration(base, base)
	if err := st.S.Query("CREATE KEYSPACE " + leftover + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").ExecContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := swapGenerations(ctx, st.S, base, generations{Serving: base}, generations{Serving: base, Building: leftover}); err != nil {
		t.Fatal(err)
	}
	own := testkit.NewTopics(t, 1, event.MainTopics()...)
	cfg := rebuildConfig(t, base)
	var out bytes.Buffer
	err := rebuild(ctx, cfg, own, &out, RebuildOptions{})
	if err == nil || !strings.Contains(err.Error(), leftover) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rebuild over an unfinished one: %v, want a refusal naming %s and --force", err, leftover)
	}
	if err := rebuild(ctx, cfg, own, &out, RebuildOptions{Force: true}); err != nil {
		t.Fatalf("rebuild --force: %v\n%s", err, out.String())
	}
	g, err := st.ptr.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The leftover's name is the next generation's, so --force dropped and re-made it.
	if g != (generations{Serving: leftover}) {
		t.Fatalf("generations after rebuild --force: %+v, want %s serving alone", g, leftover)
	}
	var n int
	if err := st.S.Query(`SELECT count(*) FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'order_view'`, base).
		ScanContext(context.WithoutCancel(ctx), &n); err != nil || n != 0 {
		t.Fatalf("the base keyspace's order_view still exists after the switch (%d, %v)", n, err)
	}
}
