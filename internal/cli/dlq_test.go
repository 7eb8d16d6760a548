package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/testkit"
)

func TestDLQListAndReplay(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 60*time.Second)
	topics := testkit.NewTopics(t, 1, "src", "dlq")
	src, dlq := topics[0], topics[1]
	prod := testkit.Client(t)
	var ids []string
	for i := 0; i < 3; i++ {
		e, _ := event.Factory{Producer: "test"}.New(event.PaymentAuthorized, "order-dlq", map[string]int{"i": i})
		v, _ := e.Encode()
		ids = append(ids, e.EventID)
		rec := &kgo.Record{Topic: dlq, Key: []byte("order-dlq"), Value: v, Headers: []kgo.RecordHeader{
			{Key: "eventId", Value: []byte(e.EventID)}, {Key: "eventType", Value: []byte(e.EventType)},
			{Key: kafka.HeaderOriginalTopic, Value: []byte(src)}, {Key: kafka.HeaderError, Value: []byte("db exploded")},
			{Key: kafka.HeaderRetryCount, Value: []byte("4")},
		}}
		if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	env := func(string) string { return "" }
	var out, errb bytes.Buffer
	if err := Run(ctx, []string{"dlq", "list", "--topic", dlq}, env, &out, &errb); err != nil {
		t.Fatalf("list: %v %s", err, errb.String())
	}
	for _, want := range []string{"db exploded", ids[0], ids[2], "payment.authorized", "3 record(s)"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("list output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := Run(ctx, []string{"dlq", "replay", "--topic", dlq, "--event-id", ids[1]}, env, &out, &errb); err != nil {
		t.Fatalf("replay: %v %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "replayed 1 record") {
		t.Fatalf("replay output %q", out.String())
	}
	if err := Run(ctx, []string{"dlq", "replay", "--topic", dlq, "--event-id", "nope"}, env, &out, &errb); err == nil {
		t.Fatal("replay of an unknown id must fail")
	}
	cons := testkit.Client(t, kgo.ConsumeTopics(src), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	f := cons.PollFetches(ctx)
	recs := f.Records()
	if len(recs) != 1 {
		t.Fatalf("source got %d records", len(recs))
	}
	e, err := event.Decode(recs[0].Value)
	if err != nil || e.EventID != ids[1] || string(recs[0].Key) != "order-dlq" {
		t.Fatalf("replayed %v %v", e, err)
	}
	for _, h := range recs[0].Headers {
		if strings.HasPrefix(h.Key, "x-") {
			t.Fatalf("replayed record kept %s", h.Key)
		}
	}
	if err := Run(context.Background(), []string{"dlq", "replay", "--topic", dlq}, env, &out, &errb); err != ErrUsage {
		t.Fatalf("replay without a selector: %v", err)
	}
}
