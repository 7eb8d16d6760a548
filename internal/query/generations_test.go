package query

import (
	"bytes"
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
	g, err := st.ptr.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := swapGenerations(ctx, st.S, base, g, generations{Serving: base, Building: leftover,
		Layouts: map[string]layout{leftover: currentLayout}}); err != nil {
		t.Fatal(err)
	}
	own := testkit.NewTopics(t, 1, event.MainTopics()...)
	cfg := rebuildConfig(t, base)
	var out bytes.Buffer
	err = rebuild(ctx, cfg, own, &out, RebuildOptions{})
	if err == nil || !strings.Contains(err.Error(), leftover) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rebuild over an unfinished one: %v, want a refusal naming %s and --force", err, leftover)
	}
	if err := rebuild(ctx, cfg, own, &out, RebuildOptions{Force: true}); err != nil {
		t.Fatalf("rebuild --force: %v\n%s", err, out.String())
	}
	if g, err = st.ptr.read(ctx); err != nil {
		t.Fatal(err)
	}
	// The leftover's name is the next generation's, so --force dropped and re-made it.
	if want := (generations{Serving: leftover, Layouts: map[string]layout{leftover: currentLayout}}); !g.same(want) {
		t.Fatalf("generations after rebuild --force: %+v, want %s serving alone", g, leftover)
	}
	if left := baseTables(t, st, base); len(left) > 0 {
		t.Fatalf("the base keyspace still has %v after the switch", left)
	}
}

// baseTables lists the read model's data tables still in keyspace base.
func baseTables(t *testing.T, st *Cassandra, base string) []string {
	t.Helper()
	var left []string
	for _, table := range dataTables {
		var n int
		if err := st.S.Query(`SELECT count(*) FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?`, base, table).
			Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			left = append(left, table)
		}
	}
	return left
}

func TestLayoutOfARowWithoutLayouts(t *testing.T) {
	g := generations{Serving: "rm_g1", Building: "rm_g2", Layouts: map[string]layout{"rm_g2": layoutOrders}}
	if g.layoutOf("rm_g1") != layoutViewTables || g.layoutOf("rm_g2") != layoutOrders {
		t.Fatalf("layouts of %+v: %d, %d", g, g.layoutOf("rm_g1"), g.layoutOf("rm_g2"))
	}
}
