package outbox

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

func frameEnvelope(t testing.TB, orderID string) event.Envelope {
	t.Helper()
	e, err := event.Factory{Producer: "test"}.New(event.OrderCreated, orderID, event.OrderCreatedPayload{
		CustomerID: "cust:7 ü", TotalAmount: event.MustMoney("12.50"), Currency: "EUR",
		Items: []event.Item{{ItemID: "SKU-1", Quantity: 1, UnitPrice: event.MustMoney("12.50")}}})
	if err != nil {
		t.Fatal(err)
	}
	e.CorrelationID = "corr:12:with:colons"
	return e
}

// What Queue puts in a NOTIFY is what the relay publishes, and the published value is the envelope
// with producedAt, byte for byte what encoding it with producedAt set would give (field order aside).
func TestFramesCarryTheEventsAndStampProducedAt(t *testing.T) {
	var n notes
	var envs []event.Envelope
	for i, id := range []string{"order-1", "22:odd:key", "ünïcode"} {
		e := frameEnvelope(t, id)
		if i != 1 { // one without a trace context (tracing off)
			e.Trace = event.Trace{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "vendor=" + id}
		}
		v, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		n.add(appendFrame(nil, e, v))
		envs = append(envs, e)
	}
	ps := n.payloads()
	if len(ps) != 1 {
		t.Fatalf("%d payloads for three small events", len(ps))
	}
	got, err := parseFrames(ps[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(envs) {
		t.Fatalf("%d events parsed, want %d", len(got), len(envs))
	}
	at := time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC)
	for i, e := range envs {
		g := got[i]
		if g.id != e.EventID || g.typ != string(e.EventType) || g.key != e.OrderID || g.correlation != e.CorrelationID ||
			!g.occurredAt.Equal(e.OccurredAt) || g.trace != e.Trace {
			t.Fatalf("event %d parsed as %+v, want %+v", i, g, e)
		}
		var back event.Envelope
		if err := json.Unmarshal(stamp(g.value, at), &back); err != nil {
			t.Fatalf("stamped envelope does not decode: %v\n%s", err, stamp(g.value, at))
		}
		want := e
		want.ProducedAt = at
		if !back.ProducedAt.Equal(at) || back.EventID != want.EventID || !reflect.DeepEqual(back.Payload, want.Payload) ||
			!back.OccurredAt.Equal(want.OccurredAt) || back.OrderID != want.OrderID {
			t.Fatalf("stamped envelope %+v, want %+v", back, want)
		}
		if err := back.Validate(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFramesSplitAcrossPayloadsAndOverflow(t *testing.T) {
	var n notes
	e := frameEnvelope(t, "o")
	v, _ := e.Encode()
	frame := appendFrame(nil, e, v)
	count := 2*maxNotifyPayload/len(frame) + 3
	for range count {
		n.add(frame)
	}
	ps := n.payloads()
	total := 0
	for _, p := range ps {
		if len(p) > maxNotifyPayload {
			t.Fatalf("payload of %d bytes", len(p))
		}
		evs, err := parseFrames(p)
		if err != nil {
			t.Fatal(err)
		}
		total += len(evs)
	}
	if total != count || len(ps) < 3 {
		t.Fatalf("%d events in %d payloads, want %d", total, len(ps), count)
	}

	big := frameEnvelope(t, "big")
	big.Payload = json.RawMessage(`{"x":"` + strings.Repeat("a", maxNotifyPayload) + `"}`)
	bv, _ := big.Encode()
	n = notes{}
	n.add(frame)
	n.add(appendFrame(nil, big, bv))
	n.add(frame) // after an overflow, later events wait for the table read too
	ps = n.payloads()
	if len(ps) != 2 || ps[1] != "" {
		t.Fatalf("payloads %q, want one with the first event and the empty overflow mark", ps)
	}
}

func TestParseFramesRejectsWhatQueueDidNotWrite(t *testing.T) {
	e := frameEnvelope(t, "o")
	v, _ := e.Encode()
	good := string(appendFrame(nil, e, v))
	for name, p := range map[string]string{
		"json array":       `[{"eventId":"x"}]`,
		"not json":         "not json",
		"truncated":        good[:len(good)-3],
		"length too large": "99999:abc",
		"negative length":  "-1:" + good,
		"missing fields":   "1:a1:b",
		"bad time":         strings.Replace(good, e.OccurredAt.Format(time.RFC3339Nano), strings.Repeat("x", len(e.OccurredAt.Format(time.RFC3339Nano))), 1),
		"value not object": string(appendFrame(nil, e, []byte(`"str"`))),
		"empty object":     string(appendFrame(nil, e, []byte(`{}`))),
		"long length":      "00000001:a" + good,
		"trailing garbage": good + "x",
	} {
		if evs, err := parseFrames(p); !errors.Is(err, errFrame) {
			t.Errorf("%s: parsed as %+v (err %v)", name, evs, err)
		}
	}
}

func FuzzParseFrames(f *testing.F) {
	e := frameEnvelope(f, "o")
	v, _ := e.Encode()
	f.Add(string(appendFrame(nil, e, v)))
	f.Add("1:a1:b1:c1:d0:2:{}")
	f.Add("")
	f.Fuzz(func(t *testing.T, p string) {
		evs, err := parseFrames(p)
		if err != nil {
			return
		}
		var again []byte
		for _, ev := range evs {
			if ev.id == "" || !strings.HasPrefix(string(ev.value), `{"`) || ev.value[len(ev.value)-1] != '}' {
				t.Fatalf("accepted %+v", ev)
			}
			again = appendFrame(again, event.Envelope{EventID: ev.id, EventType: event.Type(ev.typ), OrderID: ev.key,
				CorrelationID: ev.correlation, OccurredAt: ev.occurredAt}, ev.value)
		}
		if _, err := parseFrames(string(again)); err != nil {
			t.Fatalf("re-encoded frames do not parse: %v", err)
		}
	})
}

// BenchmarkRelayDecode compares the relay's work per notified event: parsing a frame and stamping
// producedAt, against decoding the JSON envelope and encoding it again (what it did before).
func BenchmarkRelayDecode(b *testing.B) {
	e := frameEnvelope(b, "5b0c5f1e-8f0e-4a57-9a2c-3f2d8f7e1a01")
	v, _ := e.Encode()
	frame := string(appendFrame(nil, e, v))
	array := "[" + string(v) + "]"
	at := time.Now().UTC()
	b.Run("frames", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			evs, err := parseFrames(frame)
			if err != nil {
				b.Fatal(err)
			}
			_ = stamp(evs[0].value, at)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var envs []event.Envelope
			if err := json.Unmarshal([]byte(array), &envs); err != nil {
				b.Fatal(err)
			}
			envs[0].ProducedAt = at
			if _, err := envs[0].Encode(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
