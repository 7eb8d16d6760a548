package query

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/google/uuid"

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

// TestPointerStaleness pins the rules a rebuild relies on (generationMaxAge): a copy of the row
// older than maxAge is never used, and a write that ends after its copy aged past maxAge is sent
// again to the generations of a fresh copy, so a generation named meanwhile gets it too.
func TestPointerStaleness(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, time.Minute)
	base := testkit.CassandraConfig(t).Keyspace
	st := newCassandraKeyspace(t, base)
	st.ptr.refresh, st.ptr.maxAge = 50*time.Millisecond, 200*time.Millisecond
	g, err := st.ptr.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := nextGeneration(base, base)
	cfg := testkit.CassandraConfig(t)
	cfg.Keyspace = base
	if err := migrateKeyspace(ctx, cfg, st.S, next, currentLayout); err != nil {
		t.Fatal(err)
	}
	m, err := Fold(withID(saga(t, uuid.NewString()), uuid.NewString())[0])
	if err != nil {
		t.Fatal(err)
	}

	// A copy older than maxAge is not used: current reads the row again.
	st.ptr.cached.Store(&generationCache{gens: generations{Serving: "stale"}, readAt: time.Now().Add(-time.Second)})
	if got, _, err := st.ptr.current(ctx); err != nil || got.Serving != base {
		t.Fatalf("current with a copy 1 s old: %+v, %v; want the row (%s serving)", got, err, base)
	}

	// A write whose copy ages past maxAge while it runs: the row names a building generation in
	// the meantime, and the write reaches it too.
	var filled []string
	err = st.write(ctx, ctx, func(b *gocql.Batch, ks string, l layout) {
		l.addMutation(b, ks, m)
		filled = append(filled, ks)
		if len(filled) == 1 {
			if _, err := swapGenerations(ctx, st.S, base, g, generations{Serving: base, Building: next,
				Layouts: map[string]layout{next: currentLayout}}); err != nil {
				t.Error(err)
			}
			time.Sleep(2 * st.ptr.maxAge)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{base, next}; !slices.Equal(filled, want) {
		t.Fatalf("the slow write went to %v, want %v", filled, want)
	}
	var n int
	if err := st.S.Query(`SELECT count(*) FROM `+next+`.orders WHERE order_id = ?`, m.OrderID).ScanContext(ctx, &n); err != nil || n != 1 {
		t.Fatalf("the order in %s: %d rows, %v; want 1", next, n, err)
	}
}

// same reports whether g and o name the same keyspaces with the same layouts.
func (g generations) same(o generations) bool {
	if g.Serving != o.Serving || g.Building != o.Building || g.Retiring != o.Retiring {
		return false
	}
	for _, ks := range g.writes() {
		if g.layoutOf(ks) != o.layoutOf(ks) {
			return false
		}
	}
	return true
}
