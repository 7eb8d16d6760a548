// Package tracestore is the trace backend of orderflow dev: it receives spans over OTLP/HTTP (the
// services export to it exactly as to Jaeger) and answers the part of Jaeger's query API the
// tracking page uses, keeping the latest traces in memory.
package tracestore

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Store keeps up to limit traces; the oldest received is dropped first.
type Store struct {
	mu     sync.Mutex
	limit  int
	traces map[string]*trace
	order  []string // trace ids, oldest first
}

type trace struct {
	spans []span
}

type span struct {
	id, parent, name, service string
	start, duration           int64 // µs
	tags                      map[string]any
}

// New returns a store keeping up to limit traces.
func New(limit int) *Store { return &Store{limit: limit, traces: map[string]*trace{}} }

// maxExport bounds one OTLP request (the SDK sends at most 512 spans per request by default).
const maxExport = 16 << 20

// Handler serves POST /v1/traces (OTLP/HTTP, protobuf), GET /api/traces?service=&tags= and
// GET /api/traces/{id} (Jaeger's JSON).
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.receive)
	mux.HandleFunc("GET /api/traces", s.search)
	mux.HandleFunc("GET /api/traces/{id}", s.get)
	return mux
}

func (s *Store) receive(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = http.MaxBytesReader(w, r.Body, maxExport)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = io.LimitReader(zr, maxExport)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, "not an OTLP protobuf export request: "+err.Error(), http.StatusBadRequest)
		return
	}
	s.add(&req)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (s *Store) add(req *coltracepb.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := "unknown"
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				id := hex.EncodeToString(sp.GetTraceId())
				tr := s.traces[id]
				if tr == nil {
					tr = &trace{}
					s.traces[id] = tr
					s.order = append(s.order, id)
					if len(s.order) > s.limit {
						delete(s.traces, s.order[0])
						s.order = s.order[1:]
					}
				}
				tags := map[string]any{}
				for _, a := range sp.GetAttributes() {
					tags[a.GetKey()] = value(a.GetValue())
				}
				if sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
					tags["error"] = true
				}
				if k := kinds[sp.GetKind()]; k != "" { // as Jaeger reports it
					tags["span.kind"] = k
				}
				start := int64(sp.GetStartTimeUnixNano() / 1000) //nolint:gosec // nanoseconds since 1970 fit
				tr.spans = append(tr.spans, span{id: hex.EncodeToString(sp.GetSpanId()), parent: hex.EncodeToString(sp.GetParentSpanId()),
					name: sp.GetName(), service: service, start: start,
					duration: int64(sp.GetEndTimeUnixNano()/1000) - start, tags: tags}) //nolint:gosec // as above
			}
		}
	}
}

var kinds = map[tracepb.Span_SpanKind]string{tracepb.Span_SPAN_KIND_SERVER: "server", tracepb.Span_SPAN_KIND_CLIENT: "client",
	tracepb.Span_SPAN_KIND_PRODUCER: "producer", tracepb.Span_SPAN_KIND_CONSUMER: "consumer"}

func value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	}
	return fmt.Sprint(v.GetValue())
}

// search returns the traces with a span of service carrying every tag (Jaeger's ?tags= JSON map).
func (s *Store) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var tags map[string]string
	if t := q.Get("tags"); t != "" {
		if err := json.Unmarshal([]byte(t), &tags); err != nil {
			http.Error(w, "tags must be a JSON object of strings", http.StatusBadRequest)
			return
		}
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 20
	}
	service := q.Get("service")
	s.mu.Lock()
	var out []jaegerTrace
	for i := len(s.order) - 1; i >= 0 && len(out) < limit; i-- {
		tr := s.traces[s.order[i]]
		for _, sp := range tr.spans {
			if (service == "" || sp.service == service) && matches(sp.tags, tags) {
				out = append(out, tr.jaeger(s.order[i]))
				break
			}
		}
	}
	s.mu.Unlock()
	writeTraces(w, out)
}

func matches(have map[string]any, want map[string]string) bool {
	for k, v := range want {
		if fmt.Sprint(have[k]) != v {
			return false
		}
	}
	return true
}

func (s *Store) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	tr := s.traces[id]
	var out []jaegerTrace
	if tr != nil {
		out = append(out, tr.jaeger(id))
	}
	s.mu.Unlock()
	if tr == nil {
		http.Error(w, `{"data":null,"errors":[{"code":404,"msg":"trace not found"}]}`, http.StatusNotFound)
		return
	}
	writeTraces(w, out)
}

func writeTraces(w http.ResponseWriter, ts []jaegerTrace) {
	if ts == nil {
		ts = []jaegerTrace{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": ts})
}

// jaegerTrace is Jaeger's JSON form of a trace.
type jaegerTrace struct {
	TraceID   string                       `json:"traceID"`
	Spans     []jaegerSpan                 `json:"spans"`
	Processes map[string]map[string]string `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []jaegerRef `json:"references"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []jaegerTag `json:"tags"`
	ProcessID     string      `json:"processID"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

func (t *trace) jaeger(id string) jaegerTrace {
	out := jaegerTrace{TraceID: id, Processes: map[string]map[string]string{}}
	pids := map[string]string{}
	for _, sp := range t.spans {
		pid, ok := pids[sp.service]
		if !ok {
			pid = "p" + strconv.Itoa(len(pids)+1)
			pids[sp.service] = pid
			out.Processes[pid] = map[string]string{"serviceName": sp.service}
		}
		js := jaegerSpan{TraceID: id, SpanID: sp.id, OperationName: sp.name, StartTime: sp.start, Duration: sp.duration,
			ProcessID: pid, References: []jaegerRef{}, Tags: []jaegerTag{}}
		if sp.parent != "" {
			js.References = append(js.References, jaegerRef{RefType: "CHILD_OF", TraceID: id, SpanID: sp.parent})
		}
		for k, v := range sp.tags {
			js.Tags = append(js.Tags, jaegerTag{k, v})
		}
		out.Spans = append(out.Spans, js)
	}
	return out
}
