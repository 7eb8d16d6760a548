package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	t0     = time.Date(2024, 2, 7, 15, 0, 0, 0, time.UTC)
	orderA = "5b0c5f1e-8f0e-4a57-9a2c-3f2d8f7e1a01"
)

func fixedFactory(producer string, id string) Factory {
	return Factory{Producer: producer, Now: func() time.Time { return t0 }, NewID: func() string { return id }}
}

func reason(s string) *string { return &s }

// goldenCases builds one envelope per event type with a fixed clock and ids.
func goldenCases(t *testing.T) map[Type]any {
	t.Helper()
	return map[Type]any{
		OrderCreated: OrderCreatedPayload{CustomerID: "cust-1", TotalAmount: MustMoney("50.00"), Currency: "EUR",
			Items: []Item{{ItemID: "SKU-001", Quantity: 2, UnitPrice: MustMoney("20.00")}, {ItemID: "SKU-002", Quantity: 1, UnitPrice: MustMoney("10")}}},
		InventoryReserved: InventoryPayload{OrderID: orderA, Amount: MustMoney("50.00"), Currency: "EUR", CustomerID: "cust-1",
			ReservationID: "0b6f3c8e-2d7a-4c31-8a9b-1c2d3e4f5a6b"},
		InventoryRejected: InventoryPayload{OrderID: orderA, Amount: MustMoney("50.00"), Currency: "EUR", CustomerID: "cust-1",
			Reason: ReasonInsufficientStock, Items: []RejectedItem{{ItemID: "SKU-001", Requested: 2, Available: 1}}},
		InventoryReleased: InventoryReleasedPayload{OrderID: orderA, ReservationID: "0b6f3c8e-2d7a-4c31-8a9b-1c2d3e4f5a6b",
			Reason: ReasonOrderCancelled, CancelReason: ReasonCustomerRequest},
		PaymentAuthorized: PaymentPayload{PaymentID: 42, OrderID: orderA, Amount: MustMoney("50.00"), Currency: "EUR", Status: PaymentStatusAuthorized},
		PaymentFailed: PaymentPayload{PaymentID: 43, OrderID: orderA, Amount: MustMoney("6000.00"), Currency: "EUR", Status: PaymentStatusFailed,
			FailureReason: reason("AMOUNT_LIMIT_EXCEEDED")},
		DeliveryAssigned: DeliveryPayload{OrderID: orderA, DeliveryID: "DEL-0123456789ab", DriverName: "Ada Lovelace", Status: DeliveryStatusAssigned,
			EstimatedDeliveryTime: t0.Add(42 * time.Minute)},
		ETAUpdated: DeliveryPayload{OrderID: orderA, DeliveryID: "DEL-0123456789ab", DriverName: "Ada Lovelace", Status: DeliveryStatusAssigned,
			EstimatedDeliveryTime: t0.Add(47 * time.Minute)},
		DeliveryCompleted: DeliveryPayload{OrderID: orderA, DeliveryID: "DEL-0123456789ab", DriverName: "Ada Lovelace", Status: DeliveryStatusDelivered,
			EstimatedDeliveryTime: t0.Add(47 * time.Minute)},
		DeliveryWaiting: DeliveryWaitingPayload{OrderID: orderA, WaitingSince: t0},
		OrderCancelled:  OrderCancelledPayload{OrderID: orderA, Reason: ReasonCustomerRequest, Comment: "ordered twice by mistake"},
		DeliveryCancelled: CancellationPayload{OrderID: orderA, Reason: ReasonCustomerRequest, DeliveryID: "DEL-0123456789ab",
			DriverName: "Ada Lovelace"},
		CancellationRefused: CancellationPayload{OrderID: orderA, Reason: ReasonDeadlineExceeded, DeliveryID: "DEL-0123456789ab",
			DriverName: "Ada Lovelace", Refusal: RefusalDelivered},
		PaymentRefunded: PaymentRefundedPayload{PaymentID: 42, OrderID: orderA, Amount: MustMoney("50.00"), Currency: "EUR",
			Reason: ReasonCustomerRequest},
	}
}

// decodeTyped decodes the payload into the struct its type names, so re-encoding goes through the
// typed model and not just the raw bytes.
func decodeTyped(e Envelope) (any, error) {
	switch e.EventType {
	case OrderCreated:
		return DecodePayload[OrderCreatedPayload](e)
	case InventoryReserved, InventoryRejected:
		return DecodePayload[InventoryPayload](e)
	case InventoryReleased:
		return DecodePayload[InventoryReleasedPayload](e)
	case PaymentAuthorized, PaymentFailed:
		return DecodePayload[PaymentPayload](e)
	case DeliveryAssigned, ETAUpdated, DeliveryCompleted:
		return DecodePayload[DeliveryPayload](e)
	case DeliveryWaiting:
		return DecodePayload[DeliveryWaitingPayload](e)
	case OrderCancelled:
		return DecodePayload[OrderCancelledPayload](e)
	case DeliveryCancelled, CancellationRefused:
		return DecodePayload[CancellationPayload](e)
	case PaymentRefunded:
		return DecodePayload[PaymentRefundedPayload](e)
	}
	return nil, errors.New("unknown type")
}

func TestGoldenRoundTrip(t *testing.T) {
	cases := goldenCases(t)
	for _, typ := range Types() {
		t.Run(string(typ), func(t *testing.T) {
			path := filepath.Join("testdata", string(typ)+".json")
			if *update {
				f := fixedFactory("test-producer", "550e8400-e29b-41d4-a716-446655440000")
				e, err := f.Caused(Envelope{EventID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", OrderID: orderA, CorrelationID: orderA}, typ, cases[typ])
				if err != nil {
					t.Fatal(err)
				}
				e.ProducedAt = t0.Add(time.Second)
				b, _ := json.MarshalIndent(e, "", "  ")
				if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			e, err := Decode(golden)
			if err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			if e.EventType != typ || e.EventType.Topic() == "" {
				t.Fatalf("type %q topic %q", e.EventType, e.EventType.Topic())
			}
			p, err := decodeTyped(e)
			if err != nil {
				t.Fatalf("decode payload: %v", err)
			}
			e.Payload, _ = json.Marshal(p)
			b, _ := json.MarshalIndent(e, "", "  ")
			if got := append(b, '\n'); !bytes.Equal(got, golden) {
				t.Fatalf("re-encoded differs from golden:\n%s\nwant:\n%s", got, golden)
			}
		})
	}
}

func TestMoneyJSON(t *testing.T) {
	var m Money
	for in, want := range map[string]string{`50`: "50.00", `0.1`: "0.10", `"12.34"`: "12.34", `1e2`: "100.00"} {
		if err := json.Unmarshal([]byte(in), &m); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if b, _ := json.Marshal(m); string(b) != want {
			t.Fatalf("%s encoded as %s, want %s", in, b, want)
		}
	}
	for _, bad := range []string{`null`, `"abc"`, `true`, `"` + strings.Repeat("9", 50) + `"`} {
		if err := json.Unmarshal([]byte(bad), &m); err == nil {
			t.Fatalf("%s: expected an error", bad)
		}
	}
	if _, err := NewMoney("1.234"); err == nil {
		t.Fatal("three decimals accepted")
	}
	// 0.1 + 0.2 is exactly 0.3 in decimal arithmetic.
	if s := MustMoney("0.1").Add(MustMoney("0.2").Decimal); !s.Equal(MustMoney("0.3").Decimal) {
		t.Fatalf("0.1+0.2 = %s", s)
	}
}

func TestValidateRejectsMissingFields(t *testing.T) {
	valid, err := os.ReadFile("testdata/order.created.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"eventId", "eventType", "schemaVersion", "occurredAt", "orderId", "payload"} {
		var m map[string]any
		_ = json.Unmarshal(valid, &m)
		delete(m, field)
		b, _ := json.Marshal(m)
		if _, err := Decode(b); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Errorf("without %s: err = %v, want ErrInvalid naming the field", field, err)
		}
	}
	var m map[string]any
	_ = json.Unmarshal(valid, &m)
	m["schemaVersion"] = 2
	b, _ := json.Marshal(m)
	if _, err := Decode(b); !errors.Is(err, ErrInvalid) {
		t.Errorf("schemaVersion 2 accepted")
	}
	if _, err := Decode([]byte("not json")); !errors.Is(err, ErrInvalid) {
		t.Errorf("garbage accepted")
	}
}

func TestCausedCopiesCorrelation(t *testing.T) {
	cause := Envelope{EventID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", OrderID: orderA, CorrelationID: "corr-1"}
	e, err := Factory{Producer: "p"}.Caused(cause, PaymentAuthorized, PaymentPayload{})
	if err != nil {
		t.Fatal(err)
	}
	if e.CorrelationID != "corr-1" || e.CausationID != cause.EventID || e.OrderID != orderA || e.EventID == "" {
		t.Fatalf("unexpected envelope %+v", e)
	}
	first, _ := Factory{Producer: "p"}.New(OrderCreated, orderA, OrderCreatedPayload{})
	if first.CorrelationID != orderA || first.CausationID != "" || first.OccurredAt.Location() != time.UTC {
		t.Fatalf("unexpected first envelope %+v", first)
	}
}

func TestDLQFor(t *testing.T) {
	for i, topic := range MainTopics() {
		if DLQFor(topic) != DLQTopics()[i] || !IsDLQ(DLQFor(topic)) {
			t.Fatalf("DLQFor(%s) = %s", topic, DLQFor(topic))
		}
	}
	if DLQFor("other") != "" {
		t.Fatal("unknown topic has a DLQ")
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte(`{"eventId":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not marked invalid: %v", err)
			}
			return
		}
		// A decoded envelope re-encodes and decodes to the same envelope.
		out, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if e2.EventID != e.EventID || e2.OrderID != e.OrderID || !e2.OccurredAt.Equal(e.OccurredAt) {
			t.Fatal("round trip changed the envelope")
		}
		_, _ = decodeTyped(e)
	})
}

// A line quantity beyond MaxQuantity is schema-invalid (stock is counted in 32-bit integers; a
// hostile producer must not overflow it).
func TestOrderCreatedQuantityIsBounded(t *testing.T) {
	for qty, ok := range map[int]bool{1: true, MaxQuantity: true, MaxQuantity + 1: false, 1 << 31: false, 0: false} {
		p := OrderCreatedPayload{CustomerID: "c", Currency: "EUR", TotalAmount: MustMoney("1.00"),
			Items: []Item{{ItemID: "SKU-001", Quantity: qty, UnitPrice: MustMoney("1.00")}}}
		if err := p.Validate(); (err == nil) != ok {
			t.Errorf("quantity %d: %v", qty, err)
		}
	}
}

func TestMoneyPostgresNumeric(t *testing.T) {
	tm := pgtype.NewMap()
	for _, s := range []string{"0", "0.10", "50.00", "-1.50", "999999999999.99", "12345678901234567890.5"} {
		in := MustMoney(s)
		buf, err := tm.Encode(pgtype.NumericOID, pgtype.BinaryFormatCode, in, nil)
		if err != nil {
			t.Fatalf("encode %s: %v", s, err)
		}
		var out Money
		if err := tm.Scan(pgtype.NumericOID, pgtype.BinaryFormatCode, buf, &out); err != nil {
			t.Fatalf("scan %s: %v", s, err)
		}
		if !out.Equal(in.Decimal) {
			t.Fatalf("%s came back as %s", s, out)
		}
		// The text form Postgres sends for the same column scans to the same amount.
		if err := tm.Scan(pgtype.NumericOID, pgtype.TextFormatCode, []byte(s), &out); err != nil || !out.Equal(in.Decimal) {
			t.Fatalf("text %s: %s, %v", s, out, err)
		}
	}
	var m Money
	for _, bad := range []string{"NaN", "Infinity"} {
		if err := tm.Scan(pgtype.NumericOID, pgtype.TextFormatCode, []byte(bad), &m); err == nil {
			t.Fatalf("%s scanned as an amount: %s", bad, m)
		}
	}
	if err := tm.Scan(pgtype.NumericOID, pgtype.BinaryFormatCode, nil, &m); err == nil {
		t.Fatal("NULL scanned as an amount")
	}
}

// BenchmarkMoneyEncode compares Money's binary encoding with what pgx does for a bare Decimal (its
// driver.Valuer string, which pgx fails to encode, re-parses and encodes).
func BenchmarkMoneyEncode(b *testing.B) {
	tm := pgtype.NewMap()
	amount := MustMoney("1234.50")
	for name, v := range map[string]any{"money": amount, "decimal-valuer": amount.Decimal} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = tm.Encode(pgtype.NumericOID, pgtype.BinaryFormatCode, v, buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Ids come out in creation order (as strings and as Postgres's uuid order, which compares bytes), so
// index inserts append instead of landing on random pages.
func TestNewIDIsTimeOrdered(t *testing.T) {
	prev := ""
	for range 2000 {
		id := NewID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 {
			t.Fatalf("%s: version %d, %v", id, u.Version(), err)
		}
		if id <= prev {
			t.Fatalf("%s came after %s", id, prev)
		}
		prev = id
	}
	e, err := Factory{Producer: "test"}.New(OrderCreated, "o", OrderCreatedPayload{})
	if err != nil || e.EventID <= prev {
		t.Fatalf("factory id %s not after %s (%v)", e.EventID, prev, err)
	}
}
