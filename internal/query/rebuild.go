package query

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// RebuildOptions change what Rebuild does.
type RebuildOptions struct {
	// ReplayOnly builds the new generation from the topics alone, without first copying the
	// serving one: orders whose events the topics no longer hold (older than their retention) are
	// then left out. For a change of the fold that must reach every order, with topics that keep
	// everything.
	ReplayOnly bool
	// Force starts over when an earlier rebuild left its generation unfinished (it crashed or was
	// killed); without it Rebuild refuses, since that rebuild may still be running.
	Force bool
	// CatchUpTimeout bounds the wait for the live projection to reach what the rebuild replayed
	// before the switch (0: 2 minutes).
	CatchUpTimeout time.Duration
}

// Rebuild builds the next generation of the read model while the current one keeps serving, then
// switches reads to it and drops the old one:
//
//  1. the new keyspace <base>_g<N> is created and named "building": from then on every projection
//     writer (query-api) writes to both;
//  2. after generationSettle (every writer has seen that), the serving generation's rows are
//     copied with their cell timestamps — the orders whose events the topics no longer hold keep
//     their rows — and every record the topics retain, up to their end offsets now, is folded
//     into it; the fold converges whatever the order, so the copy, the replay and the live writes
//     can interleave;
//  3. once the live projection's group has committed those end offsets too (so the new
//     generation holds nothing the old one lacks, and no read can go backwards), the row names
//     the new generation "serving" and the old one "retiring" (still written, for readers that
//     have not re-read the row yet);
//  4. after generationSettle the old generation is dropped.
//
// Reads never see a missing order or an older status: until step 3 they read the old generation,
// after it a generation that holds at least as much.
func Rebuild(ctx context.Context, getenv func(string) string, stdout io.Writer, opts RebuildOptions) error {
	cfg, err := service.Load(getenv, Configure)
	if err != nil {
		return err
	}
	return rebuild(ctx, cfg, event.MainTopics(), stdout, opts)
}

// rebuild is Rebuild from the given topics (tests replay topics of their own: the shared ones hold
// whatever earlier runs left there).
func rebuild(ctx context.Context, cfg Config, topics []string, stdout io.Writer, opts RebuildOptions) error {
	log := obs.NewLogger(stdout, Name+"-rebuild", cfg.LogLevel, cfg.LogFormat)
	st, err := Open(ctx, cfg.Cassandra)
	if err != nil {
		return err
	}
	defer st.Close()
	base := cfg.Cassandra.Keyspace
	g, err := st.ptr.read(ctx)
	if err != nil {
		return err
	}
	if g.Retiring != "" { // an earlier rebuild switched but did not finish dropping
		log.Info("finishing an earlier rebuild: retiring", "keyspace", g.Retiring)
		if g, err = retire(ctx, st, base, g, log); err != nil {
			return err
		}
	}
	if g.Building != "" {
		if !opts.Force {
			return fmt.Errorf("a rebuild into %s started earlier and has not finished; if it is no longer running, run `orderflow query rebuild --force` to start over", g.Building)
		}
		log.Warn("abandoning an unfinished rebuild", "keyspace", g.Building)
		next, err := swapGenerations(ctx, st.S, base, g, generations{Serving: g.Serving})
		if err != nil {
			return err
		}
		if err := dropGeneration(ctx, st.S, base, g.Building); err != nil {
			return err
		}
		g = next
	}

	// 1. Create the new generation and have every writer write to it.
	next := nextGeneration(base, g.Serving)
	if err := dropGeneration(ctx, st.S, base, next); err != nil { // a leftover of a forced start-over
		return err
	}
	if err := migrateKeyspace(ctx, cfg.Cassandra, st.S, next, currentLayout); err != nil {
		return err
	}
	building, err := swapGenerations(ctx, st.S, base, g,
		generations{Serving: g.Serving, Building: next, Layouts: map[string]layout{next: currentLayout}})
	if err != nil {
		return err
	}
	log.Info("building the next generation", "serving", g.Serving, "serving_layout", int(g.layoutOf(g.Serving)),
		"building", next, "building_layout", int(currentLayout))
	if err := sleep(ctx, generationSettle); err != nil {
		return err
	}

	// 2. Copy the serving generation, then replay the topics.
	copied := 0
	if !opts.ReplayOnly {
		if copied, err = copyGeneration(ctx, st.S, g.Serving, g.layoutOf(g.Serving), next); err != nil {
			return err
		}
		log.Info("copied the serving generation", "orders", copied)
	}
	applied, skipped, ends, err := replayTopics(ctx, cfg.Kafka, topics, log, func(ctx context.Context, ms []Mutation) (int, error) {
		rejected := 0
		err := st.applyManyTo(ctx, next, currentLayout, ms, func(m Mutation, err error) {
			rejected++
			log.Warn("write refused, event left out of the new generation", "order", m.OrderID, "event", m.History.EventID,
				"type", m.History.EventType, "error", err)
		})
		return rejected, err
	})
	if err != nil {
		return err
	}
	log.Info("replayed the topics", "applied", applied, "skipped", skipped)

	// 3. Switch once the live projection has applied what was replayed.
	timeout := opts.CatchUpTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	if err := waitCaughtUp(ctx, cfg.Kafka, cfg.Group, ends, timeout); err != nil {
		log.Warn("switching without the live projection caught up: a reader may briefly see an order as it was", "reason", err)
	}
	switched, err := swapGenerations(ctx, st.S, base, building, generations{Serving: next, Retiring: g.Serving})
	if err != nil {
		return err
	}
	log.Info("switched reads", "serving", next, "retiring", g.Serving)

	// 4. Drop the old generation once no reader uses it.
	if _, err := retire(ctx, st, base, switched, log); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rebuilt the read model of %s into %s: %d orders copied, %d events replayed (%d records skipped, each logged: undecodable or refused)\n",
		base, next, copied, applied, skipped)
	return nil
}

// retire waits until no reader or writer uses g.Retiring, takes it out of the row and drops it.
func retire(ctx context.Context, st *Cassandra, base string, g generations, log *slog.Logger) (generations, error) {
	if err := sleep(ctx, generationSettle); err != nil {
		return g, err
	}
	next, err := swapGenerations(ctx, st.S, base, g, generations{Serving: g.Serving, Building: g.Building})
	if err != nil {
		return g, err
	}
	if err := sleep(ctx, generationSettle); err != nil {
		return next, err
	}
	if err := dropGeneration(ctx, st.S, base, g.Retiring); err != nil {
		return next, err
	}
	log.Info("dropped the old generation", "keyspace", g.Retiring)
	return next, nil
}

// dropGeneration drops keyspace ks, or for the base keyspace (generation 0, which also holds the
// generation row) its data tables.
func dropGeneration(ctx context.Context, s *gocql.Session, base, ks string) error {
	if ks != base {
		if err := s.Query("DROP KEYSPACE IF EXISTS " + ks).ExecContext(ctx); err != nil {
			return fmt.Errorf("drop keyspace %s: %w", ks, err)
		}
		return nil
	}
	for _, t := range dataTables {
		if err := s.Query("DROP TABLE IF EXISTS " + ks + "." + t).ExecContext(ctx); err != nil {
			return fmt.Errorf("drop table %s.%s: %w", ks, t, err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// copyGeneration copies every order of keyspace from (of layout l) into to (of currentLayout):
// view cells with their write timestamps (so later events still win and earlier ones still lose,
// as if the copy had been folded from the events), timeline and customer rows as they are. It
// returns the orders copied.
func copyGeneration(ctx context.Context, s *gocql.Session, from string, l layout, to string) (int, error) {
	if err := copyRows(ctx, s, from+".orders_by_customer", to+".orders_by_customer", "*"); err != nil {
		return 0, err
	}
	if err := copyRows(ctx, s, from+"."+l.timelineTable(), to+"."+currentLayout.timelineTable(), strings.Join(timelineColumns, ", ")); err != nil {
		return 0, err
	}
	sel := make([]string, 0, 2*len(viewColumns)+1)
	sel = append(sel, "order_id")
	for _, c := range viewColumns {
		sel = append(sel, c, "writetime("+c+") AS wt_"+c)
	}
	q := "SELECT " + strings.Join(sel, ", ") + " FROM " + from + "." + l.viewTable()
	if l == layoutOrders {
		q += " PER PARTITION LIMIT 1"
	}
	it := s.Query(q).PageSize(500).IterContext(ctx)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(copyWorkers)
	n := 0
	for gctx.Err() == nil {
		row := map[string]any{}
		if !it.MapScan(row) {
			break
		}
		n++
		g.Go(func() error { return copyViewRow(gctx, s, to, row) })
	}
	return n, finishCopy(g, it, from+"."+l.viewTable())
}

// copyWorkers is how many rows a copy writes at once.
const copyWorkers = 8

// finishCopy waits for a copy's writes and closes its scan: the first write error, else the
// scan's.
func finishCopy(g *errgroup.Group, it *gocql.Iter, what string) error {
	scanErr := it.Close()
	if err := g.Wait(); err != nil {
		return err
	}
	if scanErr != nil {
		return fmt.Errorf("scan %s: %w", what, scanErr)
	}
	return nil
}

// copyViewRow writes one scanned view row into keyspace ks (of currentLayout): one UPDATE per
// distinct write timestamp.
func copyViewRow(ctx context.Context, s *gocql.Session, ks string, row map[string]any) error {
	byTime := map[int64][]string{}
	for _, c := range viewColumns {
		if wt, _ := row["wt_"+c].(int64); wt != 0 { // 0: the cell is null
			byTime[wt] = append(byTime[wt], c)
		}
	}
	times := make([]int64, 0, len(byTime))
	for wt := range byTime {
		times = append(times, wt)
	}
	if len(times) == 0 {
		return nil
	}
	slices.Sort(times)
	b := s.Batch(gocql.UnloggedBatch) // one partition: applied as one mutation
	for _, wt := range times {
		cols := byTime[wt]
		sort.Strings(cols)
		sets := make([]string, len(cols))
		args := []any{wt}
		for i, c := range cols {
			sets[i] = c + " = ?"
			args = append(args, row[c])
		}
		args = append(args, row["order_id"])
		b.Query("UPDATE "+ks+"."+currentLayout.viewTable()+" USING TIMESTAMP ? SET "+strings.Join(sets, ", ")+" WHERE order_id = ?", args...)
	}
	if err := b.ExecContext(ctx); err != nil {
		return fmt.Errorf("copy view row into %s: %w", ks, err)
	}
	return nil
}

// copyRows copies columns of table from into table to through CQL's JSON form, which keeps every
// type exact; columns to leaves out (the view's cells, when both tables are orders) are left as
// they are.
func copyRows(ctx context.Context, s *gocql.Session, from, to, columns string) error {
	it := s.Query("SELECT JSON " + columns + " FROM " + from).PageSize(500).IterContext(ctx)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(copyWorkers)
	for js := ""; gctx.Err() == nil && it.Scan(&js); {
		row := js
		g.Go(func() error {
			if err := s.Query("INSERT INTO "+to+" JSON ? DEFAULT UNSET", row).ExecContext(gctx); err != nil {
				return fmt.Errorf("copy a row of %s into %s: %w", from, to, err)
			}
			return nil
		})
	}
	return finishCopy(g, it, from)
}

// waitCaughtUp waits until group's committed offsets reach ends on every partition (at once when
// the group has committed nothing on these topics).
func waitCaughtUp(ctx context.Context, kc kafka.Config, group string, ends kadm.ListedOffsets, timeout time.Duration) error {
	kc.ClientID = Name + "-rebuild"
	cl, err := kgo.NewClient(kc.Options()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(timeout)
	for {
		committed, err := adm.FetchOffsets(ctx, group)
		behind, consuming := 0, 0
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if ok {
					consuming++
				}
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					behind++
				}
			})
			// No offsets at all: no live projection reads these topics, nobody to wait for.
			if behind == 0 || consuming == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("offsets of group %s: %w", group, err)
			}
			return fmt.Errorf("group %s is behind on %d partitions after %s", group, behind, timeout)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// replayTopics folds every retained record of topics, up to the current end offsets, and hands the
// mutations to write a fetched partition at a time (several partitions concurrently); write
// returns how many it rejected as invalid. Records that do not decode or fold are skipped and
// logged with their position and reason (the live projection dead-letters them). It returns those
// end offsets.
func replayTopics(ctx context.Context, kc kafka.Config, topics []string, log *slog.Logger, write func(context.Context, []Mutation) (rejected int, err error)) (applied, skipped int, ends kadm.ListedOffsets, err error) {
	kc.ClientID = Name + "-rebuild"
	admCl, err := kgo.NewClient(kc.Options()...)
	if err != nil {
		return 0, 0, nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	ends, err = adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("start offsets: %w", err)
	}
	type tp struct {
		t string
		p int32
	}
	remaining := map[tp]int64{}
	from := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Offset > s.Offset {
			remaining[tp{o.Topic, o.Partition}] = o.Offset
			if from[o.Topic] == nil {
				from[o.Topic] = map[int32]kgo.Offset{}
			}
			from[o.Topic][o.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	if len(remaining) == 0 {
		return 0, 0, ends, nil
	}
	cl, err := kgo.NewClient(kc.Options(kgo.ConsumePartitions(from))...)
	if err != nil {
		return 0, 0, nil, err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		f := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return applied, skipped, ends, err
		}
		var ferr error
		f.EachError(func(_ string, _ int32, e error) { ferr = e })
		if ferr != nil {
			return applied, skipped, ends, ferr
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var firstErr error
		f.EachPartition(func(p kgo.FetchTopicPartition) {
			wg.Go(func() {
				ms := make([]Mutation, 0, len(p.Records))
				bad := 0
				for _, r := range p.Records {
					end, ok := remaining[tp{r.Topic, r.Partition}]
					if !ok || r.Offset >= end {
						continue
					}
					m, err := decodeFold(r.Value)
					if err != nil {
						bad++
						log.Warn("record skipped: it does not decode or fold", "topic", r.Topic, "partition", r.Partition,
							"offset", r.Offset, "error", err)
						continue
					}
					ms = append(ms, m)
				}
				// The fold converges whatever the order, so a partition's records can be written
				// together.
				rejected, err := write(ctx, ms)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				applied += len(ms) - rejected
				skipped += bad + rejected
			})
		})
		wg.Wait()
		if firstErr != nil {
			return applied, skipped, ends, firstErr
		}
		f.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 >= remaining[tp{p.Topic, p.Partition}] {
				delete(remaining, tp{p.Topic, p.Partition})
			}
		})
	}
	return applied, skipped, ends, nil
}

func decodeFold(v []byte) (Mutation, error) {
	e, err := event.Decode(v)
	if err != nil {
		return Mutation{}, err
	}
	return Fold(e)
}
