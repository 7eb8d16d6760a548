package query

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/lifecycle"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Run starts query-api and blocks until ctx is cancelled or a component fails.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	return service.Main(ctx, Name, getenv, stdout, Configure, run)
}

func run(ctx context.Context, s *service.Service, cfg Config) error {
	var st Store
	group := cfg.Group
	if cfg.Store == "memory" {
		// Nothing survives a restart, so every start reads the topics from the beginning under a
		// group of its own (the runner starts a group without offsets at the earliest record).
		st = NewMemory()
		group = fmt.Sprintf("%s-memory-%d", cfg.Group, time.Now().UnixNano())
		s.Log.Info("in-memory read model: rebuilding from the topics", "group", group)
	} else {
		sess, err := s.Cassandra(ctx, cfg.Cassandra)
		if err != nil {
			return err
		}
		if err := Migrate(ctx, sess); err != nil {
			return err
		}
		w := NewWriteCoalescer(&Cassandra{S: sess}, cfg.WriteBatch, cfg.WriteConcurrency, s.Reg)
		// Added before the consumer, so it stops after it (the group stops in reverse order).
		s.Group.Add(lifecycle.Component{Name: "cassandra-writer", Run: w.Run})
		st = w
	}
	hub := NewHub()
	proj := NewProjector(st, s.Reg)
	proj.Notify = func(id string) { hub.Publish(id, time.Now()) }
	if err := s.Consumer(kafka.RunnerConfig{Group: group, Topics: event.MainTopics(), Handler: proj.Handle,
		Unavailable: IsUnavailable}); err != nil {
		return err
	}
	s.Group.Add(lifecycle.Component{Name: "sse-broadcast", Run: func(ctx context.Context) error {
		return hub.Broadcast(ctx, cfg.Kafka, s.Log)
	}})
	s.Group.Add(lifecycle.Component{Name: "dlq-depth", Run: func(ctx context.Context) error {
		return dlqDepth(ctx, cfg.Kafka, s.Reg, 15*time.Second, s.Log)
	}})
	closing := make(chan struct{})
	var once sync.Once
	s.OnHTTPShutdown(func() { once.Do(func() { close(closing) }) })
	catalog, err := loadPageCatalog(cfg.Catalog)
	if err != nil {
		return err
	}
	(&api{store: st, hub: hub, kafka: cfg.Kafka, log: s.Log, closing: closing, orderAPI: cfg.OrderAPI, catalog: catalog,
		tokens: s.PageTokens, streams: newStreamSlots(cfg.Streams), traces: newTraces(cfg.Traces)}).routes(s.Mux)
	return nil
}

// Rebuild recreates the read model from the topics: it empties the tables, then applies every
// record retained on the four topics, from the earliest offset up to the end offsets at the start,
// through the same fold as the live projection. Records that do not decode are skipped (the live
// projection dead-letters them). The live consumer group's offsets are not touched.
func Rebuild(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := service.Load(getenv, Configure)
	if err != nil {
		return err
	}
	return rebuild(ctx, cfg, event.MainTopics(), stdout)
}

// rebuild is Rebuild from the given topics (tests replay topics of their own: the shared ones hold
// whatever earlier runs left there).
func rebuild(ctx context.Context, cfg Config, topics []string, stdout io.Writer) error {
	log := obs.NewLogger(stdout, Name+"-rebuild", cfg.LogLevel, cfg.LogFormat)
	sess, err := cass.Connect(ctx, cfg.Cassandra)
	if err != nil {
		return err
	}
	defer sess.Close()
	if err := Migrate(ctx, sess); err != nil {
		return err
	}
	st := &Cassandra{S: sess}
	if err := st.Reset(ctx); err != nil {
		return err
	}
	n, skipped, err := replayTopics(ctx, cfg.Kafka, topics, func(ctx context.Context, e event.Envelope) error {
		m, err := Fold(e)
		if err != nil {
			return err
		}
		return st.Apply(ctx, m)
	})
	if err != nil {
		return err
	}
	log.Info("read model rebuilt", "applied", n, "skipped", skipped)
	fmt.Fprintf(stdout, "rebuilt %s from %d events (%d undecodable records skipped)\n", cfg.Cassandra.Keyspace, n, skipped)
	return nil
}

// replayTopics feeds every retained record of topics, up to the current end offsets, to apply
// (several partitions concurrently, each in order).
func replayTopics(ctx context.Context, kc kafka.Config, topics []string, apply func(context.Context, event.Envelope) error) (applied, skipped int, err error) {
	kc.ClientID = Name + "-rebuild"
	admCl, err := kgo.NewClient(kc.Options()...)
	if err != nil {
		return 0, 0, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, 0, fmt.Errorf("end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return 0, 0, fmt.Errorf("start offsets: %w", err)
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
		return 0, 0, nil
	}
	cl, err := kgo.NewClient(kc.Options(kgo.ConsumePartitions(from))...)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		f := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return applied, skipped, err
		}
		var ferr error
		f.EachError(func(_ string, _ int32, e error) { ferr = e })
		if ferr != nil {
			return applied, skipped, ferr
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var firstErr error
		f.EachPartition(func(p kgo.FetchTopicPartition) {
			wg.Go(func() {
				for _, r := range p.Records {
					key := tp{r.Topic, r.Partition}
					end, ok := remaining[key]
					if !ok || r.Offset >= end {
						continue
					}
					e, err := event.Decode(r.Value)
					if err == nil {
						err = apply(ctx, e)
					}
					mu.Lock()
					switch {
					case err == nil:
						applied++
					case IsUnavailable(err):
						if firstErr == nil {
							firstErr = err
						}
					default:
						skipped++
					}
					mu.Unlock()
				}
			})
		})
		wg.Wait()
		if firstErr != nil {
			return applied, skipped, firstErr
		}
		f.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 >= remaining[tp{p.Topic, p.Partition}] {
				delete(remaining, tp{p.Topic, p.Partition})
			}
		})
	}
	return applied, skipped, nil
}
