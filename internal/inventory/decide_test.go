package inventory

import (
	"testing"

	"github.com/orderflow/orderflow/internal/event"
)

func TestDecide(t *testing.T) {
	avail := map[string]int{"A": 5, "B": 1}
	p := event.OrderCreatedPayload{CustomerID: "c", Currency: "EUR", TotalAmount: event.MustMoney("9.00")}
	cases := []struct {
		name   string
		items  []event.Item
		reason string
		bad    []string
	}{
		{"all available", []event.Item{item("A", 5), item("B", 1)}, "", nil},
		{"lines of one item add up", []event.Item{item("A", 3), item("A", 3)}, event.ReasonInsufficientStock, []string{"A"}},
		{"one line short", []event.Item{item("A", 1), item("B", 2)}, event.ReasonInsufficientStock, []string{"B"}},
		{"unknown wins over short", []event.Item{item("B", 9), item("X", 1)}, event.ReasonUnknownItem, []string{"X"}},
	}
	for _, c := range cases {
		d := decide("o1", p, aggregate(c.items), avail, "r1")
		if d.reason != c.reason || d.payload.Reason != c.reason || len(d.payload.Items) != len(c.bad) {
			t.Fatalf("%s: %+v", c.name, d)
		}
		for i, id := range c.bad {
			if d.payload.Items[i].ItemID != id {
				t.Fatalf("%s: offending %v", c.name, d.payload.Items)
			}
		}
		if (c.reason == "") != (d.typ == event.InventoryReserved && d.status == StatusReserved) {
			t.Fatalf("%s: type %s status %s", c.name, d.typ, d.status)
		}
		if d.payload.ReservationID != "r1" || d.payload.OrderID != "o1" || d.payload.Amount.String() != "9.00" {
			t.Fatalf("%s: payload %+v", c.name, d.payload)
		}
	}
	if avail["A"] != 5 || avail["B"] != 1 {
		t.Fatal("decide changed the stock")
	}
}
