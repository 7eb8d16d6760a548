package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
	"github.com/orderflow/orderflow/test/harness"
)

// A record injected into a domain topic, and which of the system's groups must dead-letter it.
type injected struct {
	kind      string // malformed, bad-envelope, bad-payload, unknown-type
	topic     string
	partition int32
	offset    int64
}

func (i injected) at() string { return fmt.Sprintf("%s/%d@%d", i.topic, i.partition, i.offset) }

// typeOf gives, per domain topic, an event type published there (for schema-invalid payloads).
var typeOf = map[string]event.Type{
	event.TopicOrders: event.OrderCreated, event.TopicInventory: event.InventoryReserved,
	event.TopicPayments: event.PaymentAuthorized, event.TopicDelivery: event.DeliveryAssigned,
}

// poisonRecords builds, for topic, one record of each kind, keyed by fresh order ids.
func poisonRecords(topic string) map[string]*kgo.Record {
	f := event.Factory{Producer: "chaos-test"}
	valid := func(t event.Type, payload any) []byte {
		e, _ := f.New(t, uuid.NewString(), payload)
		b, _ := e.Encode()
		return b
	}
	badEnvelope, _ := json.Marshal(map[string]any{"eventId": "not-a-uuid", "eventType": typeOf[topic],
		"schemaVersion": 99, "occurredAt": time.Now(), "orderId": uuid.NewString(), "payload": map[string]any{}})
	recs := map[string]*kgo.Record{
		"malformed":    {Value: []byte(`{"eventId": "truncated`)},
		"bad-envelope": {Value: badEnvelope},
		"bad-payload":  {Value: valid(typeOf[topic], map[string]any{"bogus": true})},
		"unknown-type": {Value: valid("test.unknown-type", map[string]any{"note": "additive types pass"})},
	}
	for _, r := range recs {
		r.Topic, r.Key = topic, []byte(uuid.NewString())
	}
	return recs
}

// TestPoison (10): malformed and schema-invalid records in every domain topic land in the right
// dead-letter topic with every header while processing continues; an event of an unknown type is
// not poison. Then an order whose order.created was published broken (a producer bug) is
// completed by `orderflow dlq replay --value-file` with the corrected event.
func TestPoison(t *testing.T) {
	chaos(t, true)
	sys := testkit.StartSystem(t, false, env...)
	ctx := testkit.Context(t, 10*time.Minute)
	result := load(t, sys, 20, 40*time.Second)
	wait(ctx, 8*time.Second)

	prod := testkit.Client(t)
	var injections []injected
	for _, topic := range event.MainTopics() {
		for kind, rec := range poisonRecords(topic) {
			if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
			injections = append(injections, injected{kind, topic, rec.Partition, rec.Offset})
		}
	}
	injectedAt := time.Now()
	brokenID := publishBrokenOrder(ctx, t, sys)

	// The consumers that read order.created's payload (inventory, the projection) dead-letter the
	// broken one; delivery-service, which reads only order.cancelled there, passes it by.
	var toFix kafka.DLQRecord
	readers := []string{sys.Groups["INVENTORY"], sys.Groups["QUERY"]}
	slices.Sort(readers)
	testkit.Eventually(t, 60*time.Second, "the broken order.created dead-lettered by every consumer that reads it", func() bool {
		var by []string
		for _, r := range ownDLQ(ctx, t, sys, event.DLQOrders) {
			if r.Key == brokenID {
				by = append(by, r.Headers[kafka.HeaderConsumerGroup])
				if r.Headers[kafka.HeaderConsumerGroup] == sys.Groups["INVENTORY"] {
					toFix = r
				}
			}
		}
		slices.Sort(by)
		return slices.Equal(by, readers)
	})
	replayFixed(ctx, t, sys, toFix)
	fixedAt := time.Now()
	testkit.Eventually(t, 60*time.Second, "the repaired order completes", func() bool {
		return viewStatus(ctx, sys, brokenID) == "DELIVERY_ASSIGNED" || viewStatus(ctx, sys, brokenID) == "DELIVERED"
	})
	repaired := time.Since(fixedAt)

	res := result()
	checkLoad(t, res)
	// Every injection must have been handled by every group consuming its topic by now (the load
	// completed after it); count what each group dead-lettered.
	byOrigin := map[string][]string{}
	var total int64
	var perTopic []string
	for _, dlq := range event.DLQTopics() {
		recs := ownDLQ(ctx, t, sys, dlq)
		total += int64(len(recs))
		perTopic = append(perTopic, fmt.Sprintf("%s %d", dlq, len(recs)))
		for _, r := range recs {
			checkHeaders(t, dlq, r, sys)
			origin := fmt.Sprintf("%s/%s@%s", r.Headers[kafka.HeaderOriginalTopic], r.Headers[kafka.HeaderOriginalPartition], r.Headers[kafka.HeaderOriginalOffset])
			if r.Key == brokenID {
				continue
			}
			byOrigin[origin] = append(byOrigin[origin], r.Headers[kafka.HeaderConsumerGroup])
		}
	}
	for _, in := range injections {
		got, want := byOrigin[in.at()], sys.GroupsFor(in.topic)
		slices.Sort(got)
		delete(byOrigin, in.at())
		switch in.kind {
		case "unknown-type":
			if len(got) != 0 {
				t.Errorf("%s (%s) was dead-lettered by %v; unknown types must pass", in.at(), in.kind, got)
			}
		case "bad-payload": // consumers that do not read this type's payload may skip it
			if !slices.Contains(got, sys.Groups["QUERY"]) {
				t.Errorf("%s (%s) dead-lettered by %v; query-api reads every payload", in.at(), in.kind, got)
			}
		default:
			if !slices.Equal(got, want) {
				t.Errorf("%s (%s) dead-lettered by %v, want every consumer %v", in.at(), in.kind, got, want)
			}
		}
	}
	for origin, groups := range byOrigin {
		t.Errorf("dead letter from %s by %v was not injected", origin, groups)
	}
	rep := harness.VerifyAllowing(t, sys, total)
	record(row{"10 poison in every topic", sent(res), fmt.Sprintf("%d records injected at +8 s; order repaired by dlq replay in %s",
		len(injections), secs(repaired)), secs(time.Since(injectedAt)) + " until every poison was dead-lettered and the load drained",
		invariants(rep), fmt.Sprintf("exactly the poison: %d (%v)", total, perTopic)})
}

// ownDLQ reads the records of a dead-letter topic written by the system's groups.
func ownDLQ(ctx context.Context, t *testing.T, sys *testkit.System, dlq string) []kafka.DLQRecord {
	t.Helper()
	recs, err := kafka.ReadDLQ(ctx, testkit.KafkaConfig(), dlq, 0)
	if err != nil {
		t.Fatal(err)
	}
	var own []kafka.DLQRecord
	for _, r := range recs {
		for _, g := range sys.Groups {
			if r.Headers[kafka.HeaderConsumerGroup] == g {
				own = append(own, r)
			}
		}
	}
	return own
}

func checkHeaders(t *testing.T, dlq string, r kafka.DLQRecord, sys *testkit.System) {
	t.Helper()
	h := r.Headers
	orig := h[kafka.HeaderOriginalTopic]
	if event.DLQFor(orig) != dlq {
		t.Errorf("%s %d:%d: original topic %q does not belong here", dlq, r.Partition, r.Offset, orig)
	}
	if !slices.Contains(sys.GroupsFor(orig), h[kafka.HeaderConsumerGroup]) {
		t.Errorf("%s %d:%d: group %q does not consume %s", dlq, r.Partition, r.Offset, h[kafka.HeaderConsumerGroup], orig)
	}
	if _, err := strconv.Atoi(h[kafka.HeaderOriginalPartition]); err != nil {
		t.Errorf("%s %d:%d: %s %q", dlq, r.Partition, r.Offset, kafka.HeaderOriginalPartition, h[kafka.HeaderOriginalPartition])
	}
	if _, err := strconv.ParseInt(h[kafka.HeaderOriginalOffset], 10, 64); err != nil {
		t.Errorf("%s %d:%d: %s %q", dlq, r.Partition, r.Offset, kafka.HeaderOriginalOffset, h[kafka.HeaderOriginalOffset])
	}
	if _, err := strconv.Atoi(h[kafka.HeaderRetryCount]); err != nil {
		t.Errorf("%s %d:%d: %s %q", dlq, r.Partition, r.Offset, kafka.HeaderRetryCount, h[kafka.HeaderRetryCount])
	}
	if _, err := time.Parse(time.RFC3339Nano, h[kafka.HeaderFailedAt]); err != nil {
		t.Errorf("%s %d:%d: %s %q", dlq, r.Partition, r.Offset, kafka.HeaderFailedAt, h[kafka.HeaderFailedAt])
	}
	if r.Error() == "" {
		t.Errorf("%s %d:%d: no %s", dlq, r.Partition, r.Offset, kafka.HeaderError)
	}
}

// publishBrokenOrder stores a valid order whose order.created event carries a schema-invalid
// payload (quantity 0), as a buggy order-service release would, and returns its id.
func publishBrokenOrder(ctx context.Context, t *testing.T, sys *testkit.System) string {
	t.Helper()
	pool, err := pg.Open(ctx, sys.DBs["ORDER"])
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	id := uuid.NewString()
	now := time.Now().UTC().Truncate(time.Microsecond)
	err = pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error {
		tx.Writes.Queue(`INSERT INTO orders (order_id, customer_id, currency, total_amount, created_at) VALUES ($1, 'repaired', 'EUR', 10.00, $2)`, id, now)
		tx.Writes.Queue(`INSERT INTO order_items (order_id, line_no, item_id, quantity, unit_price) VALUES ($1, 1, 'SKU-001', 1, 10.00)`, id)
		e, err := event.Factory{Producer: "order-service"}.New(event.OrderCreated, id, brokenPayload(0))
		if err != nil {
			return err
		}
		e.OccurredAt = now
		return outbox.Caused(tx, e)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func brokenPayload(qty int) event.OrderCreatedPayload {
	return event.OrderCreatedPayload{CustomerID: "repaired", TotalAmount: event.MustMoney("10.00"), Currency: "EUR",
		Items: []event.Item{{ItemID: "SKU-001", Quantity: qty, UnitPrice: event.MustMoney("10.00")}}}
}

// replayFixed repairs the dead-lettered event the way an operator would: write the corrected
// event to a file and run `orderflow dlq replay --offset P:O --value-file F`.
func replayFixed(ctx context.Context, t *testing.T, sys *testkit.System, d kafka.DLQRecord) {
	t.Helper()
	e, err := event.Decode([]byte(d.Value))
	if err != nil {
		t.Fatal(err)
	}
	e.Payload, _ = json.Marshal(brokenPayload(1))
	b, _ := e.Encode()
	file := filepath.Join(t.TempDir(), "fixed.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, testkit.Binary(t), "dlq", "replay", "--topic", event.DLQOrders,
		"--offset", fmt.Sprintf("%d:%d", d.Partition, d.Offset), "--value-file", file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dlq replay: %v\n%s", err, out)
	}
	t.Logf("dlq replay: %s", out)
}
