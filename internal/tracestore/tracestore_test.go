package tracestore

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func export(t *testing.T, url string, gz bool, traceIDs ...byte) int {
	t.Helper()
	var spans []*tracepb.Span
	for _, id := range traceIDs {
		spans = append(spans, &tracepb.Span{TraceId: bytes.Repeat([]byte{id}, 16), SpanId: []byte{id, 1, 1, 1, 1, 1, 1, 1}, Name: "s",
			StartTimeUnixNano: 1e9, EndTimeUnixNano: 2e9, Attributes: []*commonpb.KeyValue{
				{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: string('a' + rune(id))}}}}})
	}
	b, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/traces", bytes.NewReader(b))
	if gz {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		_, _ = w.Write(b)
		_ = w.Close()
		req, _ = http.NewRequest(http.MethodPost, url+"/v1/traces", &z)
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func count(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Data []json.RawMessage }
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return len(r.Data)
}

// TestStoreKeepsTheLatestTraces: plain and gzipped exports are stored, searched by service and
// tag, fetched by id; beyond the limit the oldest trace goes; garbage is a 400.
func TestStoreKeepsTheLatestTraces(t *testing.T) {
	srv := httptest.NewServer(New(2).Handler())
	defer srv.Close()
	if code := export(t, srv.URL, false, 1, 2); code != 200 {
		t.Fatalf("export: %d", code)
	}
	if code := export(t, srv.URL, true, 3); code != 200 {
		t.Fatalf("gzipped export: %d", code)
	}
	id := func(b byte) string { return string(bytes.Repeat([]byte{"0123456789"[b/16], "0123456789"[b%16]}, 16)) }
	if n := count(t, srv.URL+"/api/traces/"+id(1)); n != 0 {
		t.Errorf("the oldest trace is still there")
	}
	if n := count(t, srv.URL+"/api/traces/"+id(3)); n != 1 {
		t.Errorf("the newest trace is missing")
	}
	if n := count(t, srv.URL+`/api/traces?service=svc&tags={"k":"c"}`); n != 1 {
		t.Errorf("search by tag found %d traces, want 1", n)
	}
	if n := count(t, srv.URL+`/api/traces?service=other`); n != 0 {
		t.Errorf("search by another service found %d", n)
	}
	resp, err := http.Post(srv.URL+"/v1/traces", "application/x-protobuf", bytes.NewReader([]byte("garbage")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage: %d", resp.StatusCode)
	}
}
