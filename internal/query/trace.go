package query

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/obs"
)

// TraceSpan is one span of an order's trace as the tracking page draws it: a waterfall row.
type TraceSpan struct {
	Service    string  `json:"service"`
	Name       string  `json:"name"`
	StartMs    float64 `json:"startMs"` // from the trace's first span
	DurationMs float64 `json:"durationMs"`
	Depth      int     `json:"depth"` // 0 for a root
	Kind       string  `json:"kind"`  // server, client (a database or Redis call), producer, consumer, internal
	Error      bool    `json:"error"`
}

// OrderTrace is GET /api/orders/{orderId}/trace.
type OrderTrace struct {
	TraceID   string      `json:"traceId"`
	Spans     []TraceSpan `json:"spans"`     // depth first, each parent's children by start
	Truncated bool        `json:"truncated"` // more than maxTraceSpans: the latest were left out
}

// maxTraceSpans bounds the answer (an order's trace has about a hundred spans; a long delivery adds
// a few per ETA update).
const maxTraceSpans = 500

// traces reads orders' traces from a trace backend speaking Jaeger's query API (Jaeger itself, or
// the store orderflow dev runs).
type traces struct {
	base   string // e.g. http://127.0.0.1:16686
	client *http.Client
}

// jaegerTrace is a trace in Jaeger's query API.
type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64 `json:"startTime"` // µs since the epoch
	Duration  int64 `json:"duration"`  // µs
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	ProcessID string `json:"processID"`
}

func newTraces(base string) *traces {
	if base == "" {
		return nil
	}
	return &traces{base: strings.TrimRight(base, "/"), client: &http.Client{Timeout: 5 * time.Second}}
}

var errNoTrace = errors.New("no trace recorded for this order")

// order finds the trace an order was placed in: of the traces holding a span named for the order
// (the placement's, every consumer's), the one that started first.
func (t *traces) order(ctx context.Context, id string) (OrderTrace, error) {
	tags, _ := json.Marshal(map[string]string{obs.OrderIDKey: id})
	now := time.Now()
	q := url.Values{"service": {"order-service"}, "tags": {string(tags)}, "limit": {"20"},
		"start": {strconv.FormatInt(now.Add(-7*24*time.Hour).UnixMicro(), 10)}, "end": {strconv.FormatInt(now.Add(time.Minute).UnixMicro(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/api/traces?"+q.Encode(), nil)
	if err != nil {
		return OrderTrace{}, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return OrderTrace{}, fmt.Errorf("trace backend: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return OrderTrace{}, fmt.Errorf("trace backend: %s", resp.Status)
	}
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&body); err != nil {
		return OrderTrace{}, fmt.Errorf("trace backend: %w", err)
	}
	var first *jaegerTrace
	var firstStart int64
	for i := range body.Data {
		tr := &body.Data[i]
		if len(tr.Spans) == 0 {
			continue
		}
		start := slices.MinFunc(tr.Spans, func(a, b jaegerSpan) int { return cmp.Compare(a.StartTime, b.StartTime) }).StartTime
		if first == nil || start < firstStart {
			first, firstStart = tr, start
		}
	}
	if first == nil {
		return OrderTrace{}, errNoTrace
	}
	return waterfall(first), nil
}

// waterfall orders a trace's spans depth first (children by start time) and makes their times
// relative to its first span.
func waterfall(tr *jaegerTrace) OrderTrace {
	ids := map[string]int{}
	for i, s := range tr.Spans {
		ids[s.SpanID] = i
	}
	children := map[int][]int{}
	var roots []int
	var t0 int64
	for i, s := range tr.Spans {
		if i == 0 || s.StartTime < t0 {
			t0 = s.StartTime
		}
		parent := -1
		for _, r := range s.References {
			if p, ok := ids[r.SpanID]; ok && r.RefType == "CHILD_OF" {
				parent = p
			}
		}
		if parent < 0 {
			roots = append(roots, i)
		} else {
			children[parent] = append(children[parent], i)
		}
	}
	byStart := func(a, b int) int { return cmp.Compare(tr.Spans[a].StartTime, tr.Spans[b].StartTime) }
	out := OrderTrace{TraceID: tr.TraceID, Spans: []TraceSpan{}}
	var walk func(i, depth int)
	walk = func(i, depth int) {
		if len(out.Spans) == maxTraceSpans {
			out.Truncated = true
			return
		}
		s := tr.Spans[i]
		row := TraceSpan{Service: tr.Processes[s.ProcessID].ServiceName, Name: s.OperationName, Depth: depth,
			StartMs: float64(s.StartTime-t0) / 1000, DurationMs: float64(s.Duration) / 1000}
		for _, tg := range s.Tags {
			switch {
			case tg.Key == "error" && tg.Value == true:
				row.Error = true
			case tg.Key == "span.kind":
				row.Kind, _ = tg.Value.(string)
			}
		}
		row.Kind = cmp.Or(row.Kind, "internal")
		out.Spans = append(out.Spans, row)
		cs := children[i]
		slices.SortFunc(cs, byStart)
		for _, c := range cs {
			walk(c, depth+1)
		}
	}
	slices.SortFunc(roots, byStart)
	for _, r := range roots {
		walk(r, 0)
	}
	return out
}

// trace is GET /api/orders/{orderId}/trace: the order's trace as waterfall rows.
func (a *api) trace(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	if a.traces == nil {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no trace backend is configured (QUERY_TRACES_URL)"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	tr, err := a.traces.order(ctx, id)
	switch {
	case errors.Is(err, errNoTrace):
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound,
			"no trace recorded for this order (tracing off or not sampled, or its spans not exported yet)"))
	case err != nil:
		httpx.Unavailable(w, r, a.log, "trace backend", err)
	default:
		httpx.WriteJSON(w, http.StatusOK, tr)
	}
}
