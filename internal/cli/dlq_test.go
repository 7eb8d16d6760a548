package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
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

// An operator replaces a record that can never succeed with a corrected event; the tool refuses a
// correction that is still invalid or belongs to another order.
func TestDLQReplayFixedUp(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 60*time.Second)
	topics := testkit.NewTopics(t, 1, "src", "dlq")
	src, dlq := topics[0], topics[1]
	orderID := "8a0e4f4e-9f5c-4d55-9d8e-2f1f6f0a7c11"
	payload := func(qty int) event.OrderCreatedPayload {
		return event.OrderCreatedPayload{CustomerID: "c-1", TotalAmount: event.MustMoney("10.00"), Currency: "EUR",
			Items: []event.Item{{ItemID: "SKU-001", Quantity: qty, UnitPrice: event.MustMoney("10.00")}}}
	}
	broken, _ := event.Factory{Producer: "test"}.New(event.OrderCreated, orderID, payload(0))
	v, _ := broken.Encode()
	rec := &kgo.Record{Topic: dlq, Key: []byte(orderID), Value: v, Headers: []kgo.RecordHeader{
		{Key: "eventId", Value: []byte(broken.EventID)}, {Key: "eventType", Value: []byte(broken.EventType)},
		{Key: kafka.HeaderOriginalTopic, Value: []byte(src)}, {Key: kafka.HeaderError, Value: []byte("quantity must be positive")},
	}}
	if err := testkit.Client(t).ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, e event.Envelope) string {
		b, _ := e.Encode()
		p := dir + "/" + name
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := func(string) string { return "" }
	var out, errb bytes.Buffer
	replay := func(file string) error {
		return Run(ctx, []string{"dlq", "replay", "--topic", dlq, "--offset", "0:0", "--value-file", file}, env, &out, &errb)
	}
	if err := replay(write("still-broken.json", broken)); err == nil || !strings.Contains(err.Error(), "still invalid") {
		t.Fatalf("still-broken correction: %v", err)
	}
	other := broken
	other.OrderID = "another-order"
	other.Payload, _ = json.Marshal(payload(1))
	if err := replay(write("other.json", other)); err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("correction for another order: %v", err)
	}
	fixed := broken
	fixed.Payload, _ = json.Marshal(payload(2))
	if err := replay(write("fixed.json", fixed)); err != nil {
		t.Fatalf("replay: %v %s", err, errb.String())
	}
	cons := testkit.Client(t, kgo.ConsumeTopics(src), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	recs := cons.PollFetches(ctx).Records()
	if len(recs) != 1 {
		t.Fatalf("source got %d records", len(recs))
	}
	got, err := event.Decode(recs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	p, err := event.DecodePayload[event.OrderCreatedPayload](got)
	if err != nil || p.Items[0].Quantity != 2 || got.EventID != broken.EventID || string(recs[0].Key) != orderID {
		t.Fatalf("replayed %+v %v", got, err)
	}
	if err := Run(ctx, []string{"dlq", "replay", "--topic", dlq, "--all", "--value-file", "x"}, env, &out, &errb); err != ErrUsage {
		t.Fatalf("--value-file without --offset: %v", err)
	}
}
