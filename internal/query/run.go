package query

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/lifecycle"
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
		c := NewCassandra(sess, cfg.Cassandra.Keyspace)
		if err := c.open(ctx, cfg.Cassandra); err != nil {
			return err
		}
		w := NewWriteCoalescer(c, cfg.WriteBatch, cfg.WriteConcurrency, s.Reg)
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
