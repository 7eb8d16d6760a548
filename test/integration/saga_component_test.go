package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

// findWithKcat reads topic from the beginning with kcat (an independent client) until a record
// keyed by key with eventType typ appears, and returns its envelope.
func findWithKcat(t *testing.T, ctx context.Context, topic, key string, typ event.Type) event.Envelope {
	t.Helper()
	for ctx.Err() == nil {
		out, err := exec.CommandContext(ctx, "kcat", "-b", "127.0.0.1:9092", "-C", "-t", topic, "-o", "beginning", "-e",
			"-q", "-f", "%k\t%s\n").Output()
		if err != nil && ctx.Err() == nil {
			t.Fatalf("kcat: %v", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), "\t")
			if !ok || k != key {
				continue
			}
			e, err := event.Decode([]byte(v))
			if err == nil && e.EventType == typ {
				return e
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("no %s for %s on %s", typ, key, topic)
	return event.Envelope{}
}

func postOrder(t *testing.T, addr, body string) string {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/api/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct{ OrderID string }
	_ = json.NewDecoder(resp.Body).Decode(&o)
	if resp.StatusCode != 201 || o.OrderID == "" {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	return o.OrderID
}

// TestOrderToInventoryThroughRunningServices starts order-service and inventory-service from the
// built binary and follows orders through Kafka with kcat.
func TestOrderToInventoryThroughRunningServices(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 3*time.Minute)
	orderDB, invDB := testkit.NewDatabase(t), testkit.NewDatabase(t)
	orderAddr, invAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	orderGroup := testkit.Name("order-test")
	testkit.GroupAtEnd(t, orderGroup, testkit.ConsumedTopics()["ORDER"]...)
	testkit.Start(t, "order-service", orderAddr, "ORDER_HTTP_ADDR="+orderAddr, "ORDER_DB_NAME="+orderDB.Database,
		"ORDER_CONSUMER_GROUP="+orderGroup)
	group := testkit.Name("inventory-test")
	testkit.GroupAtEnd(t, group, testkit.ConsumedTopics()["INVENTORY"]...)
	testkit.Start(t, "inventory-service", invAddr, "INVENTORY_HTTP_ADDR="+invAddr, "INVENTORY_DB_NAME="+invDB.Database,
		"INVENTORY_CONSUMER_GROUP="+group)

	// A fresh item, so no other order on the shared topic can touch it.
	sku := testkit.Name("SKU")
	req, _ := http.NewRequest("PUT", "http://"+invAddr+"/api/inventory/"+sku, strings.NewReader(`{"available":10}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("set stock: %v %v", resp, err)
	}
	ok := postOrder(t, orderAddr, `{"customerId":"cust-42","currency":"EUR","items":[{"itemId":"`+sku+`","quantity":2,"unitPrice":12.50}]}`)
	created := findWithKcat(t, ctx, event.TopicOrders, ok, event.OrderCreated)
	reserved := findWithKcat(t, ctx, event.TopicInventory, ok, event.InventoryReserved)
	p, err := event.DecodePayload[event.InventoryPayload](reserved)
	if err != nil || p.ReservationID == "" || p.Amount.String() != "25.00" || p.CustomerID != "cust-42" {
		t.Fatalf("reserved payload %+v %v", p, err)
	}
	if reserved.CorrelationID != ok || reserved.CausationID != created.EventID || reserved.Producer != "inventory-service" ||
		reserved.ProducedAt.Before(reserved.OccurredAt) {
		t.Fatalf("envelope %+v", reserved)
	}

	bad := postOrder(t, orderAddr, `{"customerId":"cust-42","currency":"EUR","items":[{"itemId":"NO-SUCH-ITEM","quantity":1,"unitPrice":1}]}`)
	rejected := findWithKcat(t, ctx, event.TopicInventory, bad, event.InventoryRejected)
	rp, _ := event.DecodePayload[event.InventoryPayload](rejected)
	if rp.Reason != event.ReasonUnknownItem || len(rp.Items) != 1 || rp.Items[0].ItemID != "NO-SUCH-ITEM" {
		t.Fatalf("rejected payload %+v", rp)
	}

	resp, err := http.Get("http://" + invAddr + "/api/inventory/" + sku)
	if err != nil {
		t.Fatal(err)
	}
	var it struct{ Available, Reserved int }
	_ = json.NewDecoder(resp.Body).Decode(&it)
	resp.Body.Close()
	if it.Reserved != 2 || it.Available != 8 {
		t.Fatalf("stock after one reservation: %+v", it)
	}
}

// TestDeliveryThroughRunningService publishes payment.authorized and reads delivery.assigned then
// eta.updated back with kcat, keyed by the orderId, with the envelope fields of the contract.
func TestDeliveryThroughRunningService(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 2*time.Minute)
	db := testkit.NewDatabase(t)
	addr := testkit.FreeAddr(t)
	group := testkit.Name("delivery-test")
	testkit.GroupAtEnd(t, group, testkit.ConsumedTopics()["DELIVERY"]...)
	testkit.Start(t, "delivery-service", addr, "DELIVERY_HTTP_ADDR="+addr, "DELIVERY_DB_NAME="+db.Database,
		"DELIVERY_CONSUMER_GROUP="+group)

	orderID := testkit.Name("order")
	cause, _ := event.Factory{Producer: "payment-service"}.New(event.PaymentAuthorized, orderID, event.PaymentPayload{
		PaymentID: 7, OrderID: orderID, Amount: event.MustMoney("10.00"), Currency: "EUR", Status: event.PaymentStatusAuthorized})
	cause.CorrelationID = "corr-" + orderID
	v, _ := cause.Encode()
	if err := testkit.Client(t).ProduceSync(ctx, &kgo.Record{Topic: event.TopicPayments, Key: []byte(orderID), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	assigned := findWithKcat(t, ctx, event.TopicDelivery, orderID, event.DeliveryAssigned)
	eta := findWithKcat(t, ctx, event.TopicDelivery, orderID, event.ETAUpdated)
	for _, e := range []event.Envelope{assigned, eta} {
		if e.CorrelationID != cause.CorrelationID || e.CausationID != cause.EventID || e.Producer != "delivery-service" || e.OrderID != orderID {
			t.Fatalf("envelope %+v", e)
		}
	}
	p, err := event.DecodePayload[event.DeliveryPayload](eta)
	if err != nil || p.Status != event.DeliveryStatusAssigned || p.DriverName == "" || !strings.HasPrefix(p.DeliveryID, "DEL-") {
		t.Fatalf("eta payload %+v %v", p, err)
	}
	// delivery.assigned precedes eta.updated on the partition (outbox order).
	types := typesOnTopic(t, ctx, event.TopicDelivery, orderID)
	if len(types) < 2 || types[0] != "delivery.assigned" || types[1] != "eta.updated" {
		t.Fatalf("event order on the topic: %v", types)
	}
}
