package query

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestDLQDepthFollowsTheTopics: the gauge reports each dead-letter topic's record count from the
// broker and follows a record written to one of them.
func TestDLQDepthFollowsTheTopics(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, time.Minute)
	reg := prometheus.NewRegistry()
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- dlqDepth(run, testkit.KafkaConfig(), reg, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	depth := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			return -1
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "kafka_dlq_records" && m.GetLabel()[0].GetValue() == event.DLQOrders {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	testkit.Eventually(t, 10*time.Second, "a first count", func() bool { return depth() >= 0 })
	before := depth()
	// A dead letter of a group of its own: verify runs elsewhere judge only their groups' records.
	if err := testkit.Client(t).ProduceSync(ctx, &kgo.Record{Topic: event.DLQOrders, Key: []byte("dlq-depth-test"), Value: []byte("{}"),
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderConsumerGroup, Value: []byte(testkit.Name("dlq-depth"))}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the count to follow the new record", func() bool { return depth() >= before+1 })
	if n := testutil.CollectAndCount(reg, "kafka_dlq_records"); n != len(event.DLQTopics()) {
		t.Fatalf("%d series, want one per dead-letter topic", n)
	}
}
