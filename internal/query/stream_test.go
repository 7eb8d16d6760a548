package query

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/testkit"
)

// The broadcast consumer runs only while a stream is open: it starts with the first subscriber,
// wakes it with an event of its order published by someone else, and stops once nobody has
// listened for Idle.
func TestBroadcastConsumesOnlyWhileSubscribed(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, time.Minute)
	hub := NewHub()
	hub.Idle = 300 * time.Millisecond
	done := make(chan error, 1)
	bctx, cancel := context.WithCancel(ctx)
	go func() {
		done <- hub.Broadcast(bctx, testkit.KafkaConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if hub.Consuming() {
		t.Fatal("consuming without subscribers")
	}
	id := uuid.NewString()
	wake, unsubscribe := hub.Subscribe(id)
	testkit.Eventually(t, 10*time.Second, "broadcast consumer started", hub.Consuming)
	// The consumer starts at the end of the topics, at a moment the test cannot see: publish until
	// one event arrives.
	cl := testkit.Client(t)
	f := event.Factory{Producer: "test"}
	sent := map[time.Time]bool{}
	deadline := time.After(15 * time.Second)
	for woken := false; !woken; {
		e, err := f.New(event.OrderCreated, id, event.OrderCreatedPayload{CustomerID: "c", TotalAmount: event.MustMoney("1.00"),
			Currency: "EUR", Items: []event.Item{{ItemID: "SKU-001", Quantity: 1, UnitPrice: event.MustMoney("1.00")}}})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := e.Encode()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: event.TopicOrders, Key: []byte(id), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		sent[e.OccurredAt] = true
		select {
		case occ := <-wake:
			if !sent[occ] {
				t.Fatalf("woken with %v, not the occurredAt of an event of this order", occ)
			}
			woken = true
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			t.Fatal("subscriber not woken by events on Kafka")
		}
	}
	unsubscribe()
	testkit.Eventually(t, 10*time.Second, "broadcast consumer stopped after the last subscriber left", func() bool { return !hub.Consuming() })
}
