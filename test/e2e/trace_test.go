package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/testkit"
)

// jaegerAPI is the query API scripts/infra starts Jaeger with.
const jaegerAPI = "http://127.0.0.1:16686"

// jaegerTrace is a trace as Jaeger's query API returns it.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		StartTime int64 `json:"startTime"` // µs
		Duration  int64 `json:"duration"`
		Tags      []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
		ProcessID string `json:"processID"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

func jaegerGet(path string) ([]jaegerTrace, error) {
	resp, err := http.Get(jaegerAPI + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data []jaegerTrace `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&r)
	return r.Data, err
}

// span is one span of a jaegerTrace with what the assertions need.
type span struct {
	id, parent, service, name string
	start                     int64
	tags                      map[string]any
}

// db names the database a client span talks to (the instrumentations use either convention).
func (s *span) db() any {
	if v, ok := s.tags["db.system.name"]; ok {
		return v
	}
	return s.tags["db.system"]
}

func spansOf(tr jaegerTrace) map[string]*span {
	out := map[string]*span{}
	for _, s := range tr.Spans {
		sp := &span{id: s.SpanID, service: tr.Processes[s.ProcessID].ServiceName, name: s.OperationName, start: s.StartTime, tags: map[string]any{}}
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" {
				sp.parent = r.SpanID
			}
		}
		for _, tg := range s.Tags {
			sp.tags[tg.Key] = tg.Value
		}
		out[sp.id] = sp
	}
	return out
}

// descends reports whether s is below anc in the span tree.
func descends(spans map[string]*span, s, anc *span) bool {
	for p := spans[s.parent]; p != nil; p = spans[p.parent] {
		if p == anc {
			return true
		}
	}
	return false
}

// TestOneOrderIsOneTraceInJaeger runs the five services exporting to the real Jaeger (scripts/infra),
// places an order and finds, through Jaeger's query API, one trace holding the whole saga: the
// request, every relay's publish and every consumer's processing in causal order across the five
// services, with the databases' spans below them. A poison record sent with a trace context shows
// up in that trace as failed processing whose child is the dead-letter write.
func TestOneOrderIsOneTraceInJaeger(t *testing.T) {
	e2e(t)
	if resp, err := http.Get(jaegerAPI + "/api/services"); err != nil || resp.Body.Close() != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Jaeger's query API does not answer (scripts/infra up starts it): %v", err)
	}
	ctx := testkit.Context(t, 3*time.Minute)
	sys := start(t, false, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "OTEL_BSP_SCHEDULE_DELAY=100")
	c := client{t: t, sys: sys, http: &http.Client{Timeout: 10 * time.Second}}
	id := c.place()
	c.waitStatus("QUERY", id, time.Minute, "DELIVERY_ASSIGNED", "DELIVERED")

	// The saga as a path through the span tree: each step below the one before.
	path := []struct{ service, name string }{
		{"order-service", "POST /api/orders"},
		{"order-service", event.TopicOrders + " publish"},
		{"inventory-service", event.TopicOrders + " process"},
		{"inventory-service", event.TopicInventory + " publish"},
		{"payment-service", event.TopicInventory + " process"},
		{"payment-service", event.TopicPayments + " publish"},
		{"delivery-service", event.TopicPayments + " process"},
		{"delivery-service", event.TopicDelivery + " publish"},
		{"query-api", event.TopicDelivery + " process"},
	}
	tags := url.QueryEscape(fmt.Sprintf(`{%q:%q}`, obs.OrderIDKey, id))
	var (
		spans  map[string]*span
		traces int
	)
	testkit.EventuallyWhy(t, time.Minute, 500*time.Millisecond, "the order's trace to hold the whole saga", func() string {
		trs, err := jaegerGet("/api/traces?service=order-service&limit=20&lookback=1h&tags=" + tags)
		if err != nil {
			return err.Error()
		}
		traces, spans = 0, nil
		for _, tr := range trs {
			ss := spansOf(tr)
			if slices.ContainsFunc(mapValues(ss), func(s *span) bool { return s.name == path[0].name && s.tags[obs.OrderIDKey] == id }) {
				traces, spans = traces+1, ss
			}
		}
		if spans == nil {
			return fmt.Sprintf("no trace with the order's POST among %d", len(trs))
		}
		var prev *span
		for _, step := range path {
			var found *span
			for _, s := range spans {
				if s.service == step.service && s.name == step.name && (prev == nil || descends(spans, s, prev)) &&
					(found == nil || s.start < found.start) {
					found = s
				}
			}
			if found == nil {
				return fmt.Sprintf("%s %q below %+v", step.service, step.name, prev)
			}
			if prev != nil && found.start < prev.start {
				t.Fatalf("%s %q starts before its ancestor %s %q", found.service, found.name, prev.service, prev.name)
			}
			prev = found
		}
		// query-api projects every event of the order: one process span per saga topic, each with
		// its Cassandra write below it.
		for _, topic := range []string{event.TopicOrders, event.TopicInventory, event.TopicPayments, event.TopicDelivery} {
			ok := false
			for _, p := range spans {
				if p.service != "query-api" || p.name != topic+" process" {
					continue
				}
				for _, s := range spans {
					if s.db() == "cassandra" && descends(spans, s, p) {
						ok = true
					}
				}
			}
			if !ok {
				return "query-api's Cassandra write for " + topic
			}
		}
		for svc, db := range map[string]string{"order-service": "postgresql", "inventory-service": "postgresql",
			"payment-service": "redis", "delivery-service": "postgresql"} {
			if !slices.ContainsFunc(mapValues(spans), func(s *span) bool { return s.service == svc && s.db() == db }) {
				return svc + "'s " + db + " spans"
			}
		}
		return ""
	})
	if traces != 1 {
		t.Errorf("%d traces hold the order's POST, want one", traces)
	}
	services := map[string]int{}
	for _, s := range spans {
		services[s.service]++
	}
	t.Logf("order %s: one trace of %d spans: %v", id, len(spans), services)

	// A poison record inside a trace of ours: every consumer of the topic dead-letters it, and
	// each dead-letter write is a child of that consumer's failed processing.
	tid, sid := make([]byte, 16), make([]byte, 8)
	_, _ = rand.Read(tid)
	_, _ = rand.Read(sid)
	traceID := hex.EncodeToString(tid)
	prod := testkit.Client(t)
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: event.TopicOrders, Key: []byte("e2e-poison-" + traceID[:8]), Value: []byte("{not json"),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-" + traceID + "-" + hex.EncodeToString(sid) + "-01")}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumers := []string{"inventory-service", "delivery-service", "query-api"}
	testkit.EventuallyWhy(t, time.Minute, 500*time.Millisecond, "the poison's trace to show each consumer's failure and dead-letter write", func() string {
		trs, err := jaegerGet("/api/traces/" + traceID)
		if err != nil || len(trs) == 0 {
			return fmt.Sprint("no trace: ", err)
		}
		spans := spansOf(trs[0])
		for _, svc := range consumers {
			ok := false
			for _, p := range spans {
				if p.service != svc || p.name != event.TopicOrders+" process" || p.tags["error"] != true {
					continue
				}
				for _, s := range spans {
					if s.name == event.DLQFor(event.TopicOrders)+" publish" && s.parent == p.id {
						ok = true
					}
				}
			}
			if !ok {
				return svc + ": failed processing with its dead-letter write below"
			}
		}
		return ""
	})
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
