package query

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// The read model's tables live in a keyspace generation: at first the configured keyspace (the
// base) itself, after each rebuild <base>_g<N>. A row in the base keyspace names the generation
// that serves reads and, while a rebuild runs, the one being built and the one being retired;
// every projection writer writes to all of them, readers read the serving one. A rebuild moves
// the row through these states (see rebuild), so the live generation answers until the new one
// holds at least as much, and then the switch is one write.
type generations struct {
	Serving  string // keyspace read and written
	Building string // keyspace a rebuild fills, written too ("" when none)
	Retiring string // keyspace just replaced, still written until every reader has switched ("" when none)
	// Layouts holds each named keyspace's table layout; one missing is layoutViewTables (the row
	// was written before layouts were recorded).
	Layouts map[string]layout
}

// layoutOf returns keyspace ks's table layout.
func (g generations) layoutOf(ks string) layout {
	if l, ok := g.Layouts[ks]; ok {
		return l
	}
	return layoutViewTables
}

// writes lists the keyspaces every projection write goes to.
func (g generations) writes() []string {
	out := []string{g.Serving}
	for _, k := range []string{g.Building, g.Retiring} {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

const (
	// generationRefresh: how often a query-api re-reads the row (lazily, on use).
	generationRefresh = time.Second
	// generationMaxAge: a copy of the row older than this is never used; the caller waits for a
	// fresh read instead.
	generationMaxAge = 3 * time.Second
	// generationSettle: how long a rebuild waits after changing the row before relying on every
	// writer and reader having seen the change (> generationMaxAge, with margin for the write in
	// flight).
	generationSettle = 5 * time.Second
)

// generationTable is created in the base keyspace; the data tables are created per generation by
// the versioned migrations.
var generationTable = []string{`CREATE TABLE IF NOT EXISTS read_model_generation (
	id text PRIMARY KEY, serving text, building text, retiring text, changed_at timestamp, layouts map<text, int>)`,
	// Rows written before layouts were recorded: every keyspace named there has layout 1.
	`ALTER TABLE read_model_generation ADD IF NOT EXISTS layouts map<text, int>`}

type generationCache struct {
	gens   generations
	readAt time.Time
}

// pointer reads and caches the generation row.
type pointer struct {
	s       *gocql.Session
	base    string
	mu      sync.Mutex // one reader of the row at a time
	cached  atomic.Pointer[generationCache]
	maxAge  time.Duration
	refresh time.Duration
}

func newPointer(s *gocql.Session, base string) *pointer {
	return &pointer{s: s, base: base, maxAge: generationMaxAge, refresh: generationRefresh}
}

// read returns the row as stored; when there is none, the base keyspace serving in the layout its
// tables have (see baseLayout).
func (p *pointer) read(ctx context.Context) (generations, error) {
	g := generations{Serving: p.base}
	var serving, building, retiring *string
	var layouts map[string]int
	err := p.s.Query(`SELECT serving, building, retiring, layouts FROM `+p.base+`.read_model_generation WHERE id = 'current'`).
		ScanContext(ctx, &serving, &building, &retiring, &layouts)
	var invalid *gocql.RequestErrInvalid
	switch {
	// Invalid: the table does not exist yet (a keyspace no query-api has opened; the statement
	// itself is constant and valid). Either way the base keyspace is all there is.
	case errors.Is(err, gocql.ErrNotFound), errors.As(err, &invalid):
		l, err := baseLayout(ctx, p.s, p.base)
		g.Layouts = map[string]layout{p.base: l}
		return g, err
	case err != nil:
		return g, fmt.Errorf("read %s.read_model_generation: %w", p.base, err)
	}
	if len(layouts) > 0 {
		g.Layouts = map[string]layout{}
		for ks, l := range layouts {
			g.Layouts[ks] = layout(l)
		}
	}
	if serving != nil && *serving != "" {
		g.Serving = *serving
	}
	if building != nil {
		g.Building = *building
	}
	if retiring != nil {
		g.Retiring = *retiring
	}
	return g, nil
}

// current returns the generations, re-reading the row once it is older than the refresh period:
// the first caller after that reads it while the others go on with the copy they have, unless
// that copy is older than maxAge.
func (p *pointer) current(ctx context.Context) (generations, time.Time, error) {
	c := p.cached.Load()
	if c != nil && time.Since(c.readAt) < p.refresh {
		return c.gens, c.readAt, nil
	}
	if c != nil && time.Since(c.readAt) < p.maxAge {
		if !p.mu.TryLock() {
			return c.gens, c.readAt, nil
		}
	} else {
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if c2 := p.cached.Load(); c2 != nil && time.Since(c2.readAt) < p.refresh {
		return c2.gens, c2.readAt, nil // another caller has just read it
	}
	start := time.Now() // the copy is as old as the moment the read was sent
	g, err := p.read(ctx)
	if err != nil {
		return generations{}, time.Time{}, err
	}
	p.cached.Store(&generationCache{gens: g, readAt: start})
	return g, start, nil
}

// nextGeneration names the keyspace after serving: <base>_g<N+1>.
func nextGeneration(base, serving string) string {
	n := 0
	if rest, ok := strings.CutPrefix(serving, base+"_g"); ok {
		n, _ = strconv.Atoi(rest)
	}
	return fmt.Sprintf("%s_g%d", base, n+1)
}

// baseLayout is the layout of a base keyspace without a generation row: layoutViewTables when it
// holds order_view (a read model made before generations were recorded), else the current one.
func baseLayout(ctx context.Context, s *gocql.Session, base string) (layout, error) {
	var n int
	if err := s.Query(`SELECT count(*) FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'order_view'`, base).
		ScanContext(ctx, &n); err != nil {
		return 0, fmt.Errorf("tables of %s: %w", base, err)
	}
	if n > 0 {
		return layoutViewTables, nil
	}
	return currentLayout, nil
}

// createGenerationRow writes the row for a base keyspace that has none (the first query-api to open
// it; replicas opening together write the same row, and only the first write counts).
func createGenerationRow(ctx context.Context, s *gocql.Session, base string) error {
	l, err := baseLayout(ctx, s, base)
	if err != nil {
		return err
	}
	if _, err := s.Query(`INSERT INTO `+base+`.read_model_generation (id, serving, layouts, changed_at) VALUES ('current', ?, ?, ?) IF NOT EXISTS`,
		base, map[string]int{base: int(l)}, time.Now()).MapScanCAS(map[string]any{}); err != nil {
		return fmt.Errorf("create %s.read_model_generation row: %w", base, err)
	}
	return nil
}

// swapGenerations moves the row from old to next with a lightweight transaction, so two rebuilds
// cannot interleave; it fails when the row is not old any more. A keyspace of next keeps its layout
// of old unless next.Layouts gives one; it returns next with every layout.
func swapGenerations(ctx context.Context, s *gocql.Session, base string, old, next generations) (generations, error) {
	null := func(k string) any {
		if k == "" {
			return nil
		}
		return k
	}
	layouts := map[string]int{}
	full := next
	full.Layouts = map[string]layout{}
	for _, ks := range next.writes() {
		l, ok := next.Layouts[ks]
		if !ok {
			l = old.layoutOf(ks)
		}
		layouts[ks], full.Layouts[ks] = int(l), l
	}
	applied, err := s.Query(`UPDATE `+base+`.read_model_generation SET serving = ?, building = ?, retiring = ?, layouts = ?, changed_at = ?
		WHERE id = 'current' IF serving = ? AND building = ? AND retiring = ?`,
		next.Serving, null(next.Building), null(next.Retiring), layouts, time.Now(), old.Serving, null(old.Building), null(old.Retiring)).
		MapScanCAS(map[string]any{})
	if err != nil {
		return next, fmt.Errorf("update %s.read_model_generation: %w", base, err)
	}
	if !applied {
		return next, fmt.Errorf("%s.read_model_generation changed under this rebuild (another rebuild running?); expected %+v", base, old)
	}
	return full, nil
}
