package disruptive

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

func health(addr string) map[string]string {
	out := map[string]string{}
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	var rep struct {
		Status     string
		Components map[string]struct{ Status string }
	}
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	out["overall"] = rep.Status
	for k, v := range rep.Components {
		out[k] = v.Status
	}
	return out
}

// TestPaymentsContinueWithoutRedis stops Redis under a running payment-service, delivers every
// event three times plus a second event per order, and checks one charge per order; health shows
// Redis DOWN and recovers by itself when Redis is back.
func TestPaymentsContinueWithoutRedis(t *testing.T) {
	disruptive(t)
	ctx := testkit.Context(t, 4*time.Minute)
	db := testkit.NewDatabase(t)
	addr := testkit.FreeAddr(t)
	group := testkit.Name("payment-test")
	testkit.GroupAtEnd(t, group, testkit.ConsumedTopics()["PAYMENT"]...)
	testkit.Start(t, "payment-service", addr, "PAYMENT_HTTP_ADDR="+addr, "PAYMENT_DB_NAME="+db.Database,
		"PAYMENT_CONSUMER_GROUP="+group, "PAYMENT_LOCK_WAIT=200ms")
	testkit.Eventually(t, 30*time.Second, "redis UP", func() bool { return health(addr)["redis"] == "UP" })

	testkit.Infra(t, "stop", "redis")
	t.Cleanup(func() { testkit.Infra(t, "start", "redis") })
	testkit.Eventually(t, 30*time.Second, "redis DOWN in /health", func() bool { return health(addr)["redis"] == "DOWN" })

	prod := testkit.Client(t)
	const orders = 20
	var recs []*kgo.Record
	for i := 0; i < orders; i++ {
		id := uuid.NewString()
		pl := event.InventoryPayload{OrderID: id, Amount: event.MustMoney("12.34"), Currency: "EUR", CustomerID: "c", ReservationID: uuid.NewString()}
		e, _ := event.Factory{Producer: "test"}.New(event.InventoryReserved, id, pl)
		v, _ := e.Encode()
		e2 := e
		e2.EventID = uuid.NewString()
		v2, _ := e2.Encode()
		for _, val := range [][]byte{v, v, v2, v} {
			recs = append(recs, &kgo.Record{Topic: event.TopicInventory, Key: []byte(id), Value: val})
		}
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, db.URL(db.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n, distinct int
	testkit.Eventually(t, 90*time.Second, "a payment per order", func() bool {
		_ = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT order_id) FROM payments`).Scan(&n, &distinct)
		return distinct == orders
	})
	// Every duplicate has been handled once the group's committed offsets reach the topic's end.
	testkit.Eventually(t, 90*time.Second, "all records acknowledged", func() bool { return testkit.CaughtUp(t, group, event.TopicInventory) })
	_ = conn.QueryRow(ctx, `SELECT count(*) FROM payments`).Scan(&n)
	if n != orders {
		t.Fatalf("%d payments for %d orders: double charge without Redis", n, orders)
	}
	testkit.Infra(t, "start", "redis")
	testkit.Eventually(t, 30*time.Second, "redis UP again in /health", func() bool { return health(addr)["redis"] == "UP" && health(addr)["overall"] == "UP" })
}
