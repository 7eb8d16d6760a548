package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestDriverQueueDoesNotHoldThePartition: with one driver of capacity 1, three authorizations make
// two orders wait. While they wait, the consumer group has consumed and committed everything (no
// lag for a business wait); as deliveries complete, the queue is served in its order (waiting_since), and each
// waiting order's delivery.waiting precedes its delivery.assigned on the topic.
func TestDriverQueueDoesNotHoldThePartition(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 2*time.Minute)
	db := testkit.NewDatabase(t)
	addr := testkit.FreeAddr(t)
	group := testkit.Name("queue-test")
	testkit.GroupAtEnd(t, group, testkit.ConsumedTopics()["DELIVERY"]...)
	// 600 simulated minutes per real minute: a delivery takes 3 to 9 s.
	testkit.Start(t, "delivery-service", addr, "DELIVERY_HTTP_ADDR="+addr, "DELIVERY_DB_NAME="+db.Database,
		"DELIVERY_CONSUMER_GROUP="+group, "DELIVERY_DRIVERS=1", "DELIVERY_DRIVER_CAPACITY=1",
		"DELIVERY_TIME_SPEED=600", "DELIVERY_SCHEDULER_INTERVAL=1s")
	pool, err := pgxpool.New(ctx, db.URL(db.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	var orders []string
	for i := range 3 {
		id := testkit.Name("queued")
		orders = append(orders, id)
		e, _ := event.Factory{Producer: "payment-service"}.New(event.PaymentAuthorized, id, event.PaymentPayload{
			PaymentID: int64(i + 1), OrderID: id, Amount: event.MustMoney("10.00"), Currency: "EUR", Status: event.PaymentStatusAuthorized})
		v, _ := e.Encode()
		if err := testkit.Client(t).ProduceSync(ctx, &kgo.Record{Topic: event.TopicPayments, Key: []byte(id), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(testkit.Client(t))
	lag := func() int64 {
		l, err := adm.Lag(ctx, group)
		if err != nil || l.Error() != nil {
			return -1
		}
		return l[group].Lag.Total()
	}
	waiting := func() (n int) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM waiting_orders`).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	// The three authorizations sit on different partitions, consumed in parallel: which order got
	// the driver is not known in advance. The queue's own order (waiting_since) is what must be kept.
	var queued []string
	testkit.Eventually(t, 60*time.Second, "all three consumed and committed while two orders wait", func() bool {
		rows, err := pool.Query(ctx, `SELECT order_id FROM waiting_orders ORDER BY waiting_since, order_id`)
		if err != nil {
			return false
		}
		queued, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err == nil && len(queued) == 2 && lag() == 0
	})
	for _, id := range orders {
		findWithKcat(t, ctx, event.TopicDelivery, id, event.DeliveryAssigned)
	}
	if n := waiting(); n != 0 {
		t.Fatalf("%d orders still wait after all were assigned", n)
	}
	var first, second time.Time
	for i, at := range []*time.Time{&first, &second} {
		if err := pool.QueryRow(ctx, `SELECT assigned_at FROM deliveries WHERE order_id = $1`, queued[i]).Scan(at); err != nil {
			t.Fatal(err)
		}
	}
	if second.Before(first) {
		t.Fatalf("the queue was not served in arrival order: %v then %v", first, second)
	}
	waited := 0
	for _, id := range orders {
		types := typesOnTopic(t, ctx, event.TopicDelivery, id)
		if len(types) > 0 && types[0] == string(event.DeliveryWaiting) {
			waited++
			if len(types) < 2 || types[1] != string(event.DeliveryAssigned) {
				t.Fatalf("order %s: events %v, want delivery.waiting then delivery.assigned", id, types)
			}
		}
	}
	if waited != 2 {
		t.Fatalf("%d orders published delivery.waiting, want 2", waited)
	}
}

// typesOnTopic lists the eventType headers of key's records on topic, in offset order (read with
// kcat).
func typesOnTopic(t *testing.T, ctx context.Context, topic, key string) []string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "kcat", "-b", "127.0.0.1:9092", "-C", "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", "%k %h\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	var types []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, key+" ") {
			for _, h := range strings.Split(strings.TrimPrefix(line, key+" "), ",") {
				if v, ok := strings.CutPrefix(h, "eventType="); ok {
					types = append(types, v)
				}
			}
		}
	}
	return types
}
