package query

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
)

// dlqDepth keeps the gauge kafka_dlq_records{topic} (records held by each dead-letter topic, from
// its start and end offsets) current every interval until ctx ends. query-api reports it because it
// serves the dead-letter API; a count that grows is what an operator is alerted on.
func dlqDepth(ctx context.Context, kc kafka.Config, reg prometheus.Registerer, every time.Duration, log *slog.Logger) error {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kafka_dlq_records",
		Help: "Records held by each dead-letter topic (every consumer group's; refreshed periodically)."}, []string{"topic"})
	reg.MustRegister(g)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		counts, err := kafka.DLQCounts(ctx, kc, event.DLQTopics()...)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Debug("dead-letter counts unavailable", "err", err)
		case err == nil:
			for _, topic := range event.DLQTopics() {
				g.WithLabelValues(topic).Set(float64(counts[topic]))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
