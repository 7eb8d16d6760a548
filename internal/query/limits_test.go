package query

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/testkit"
)

// problemOf reads a problem body, failing unless the answer is one with status want.
func problemOf(t *testing.T, resp *http.Response, want int) httpx.Problem {
	t.Helper()
	defer resp.Body.Close()
	var p httpx.Problem
	if resp.StatusCode != want || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("answered %d %s, want %d with a problem body", resp.StatusCode, resp.Header.Get("Content-Type"), want)
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.Status != want || p.Detail == "" {
		t.Fatalf("problem body %+v (%v)", p, err)
	}
	return p
}

// TestPageTokensAreValidatedBeforeUse: a listing's tokens work for that listing only; malformed,
// altered, foreign and cross-listing tokens are a 400 problem and never reach the store.
func TestPageTokensAreValidatedBeforeUse(t *testing.T) {
	st := &cursorSpy{Store: NewMemory()}
	srv, p := testServer(t, st)
	ctx := context.Background()
	for i := range 5 {
		e := withID(saga(t, uuid.NewString()), uuid.NewString())[0]
		e.OccurredAt = e.OccurredAt.Add(time.Duration(i) * time.Minute)
		if err := p.Handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	var page struct {
		Orders        []View
		NextPageToken string
	}
	if code := getJSON(t, srv.URL+"/api/orders?customerId=cust-7&limit=2", &page); code != 200 || page.NextPageToken == "" {
		t.Fatalf("first page: %d, token %q", code, page.NextPageToken)
	}
	good := page.NextPageToken
	if code := getJSON(t, srv.URL+"/api/orders?customerId=cust-7&limit=2&pageToken="+good, &page); code != 200 || len(page.Orders) != 2 {
		t.Fatalf("second page with the issued token: %d, %d orders", code, len(page.Orders))
	}
	altered := []byte(good)
	altered[len(altered)/2] ^= 1
	foreign := httpx.NewPageTokens("another deployment").Seal("orders-of-customer\x00cust-7", []byte(page.Orders[0].OrderID))
	st.seen = 0
	for name, q := range map[string]string{
		"not base64":            "customerId=cust-7&pageToken=zzzz!",
		"base64 of junk":        "customerId=cust-7&pageToken=zzzz",
		"altered":               "customerId=cust-7&pageToken=" + string(altered),
		"another key":           "customerId=cust-7&pageToken=" + foreign,
		"another customer":      "customerId=cust-8&pageToken=" + good,
		"the unfiltered list":   "pageToken=" + good,
		"huge":                  "pageToken=" + strings.Repeat("A", 5000),
		"invalid UTF-8 filter":  "customerId=" + url.QueryEscape("\xff\xfe"),
		"empty customer filter": "customerId=",
	} {
		resp, err := http.Get(srv.URL + "/api/orders?" + q)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) { problemOf(t, resp, http.StatusBadRequest) })
	}
	if st.seen != 0 {
		t.Errorf("%d refused tokens reached the store", st.seen)
	}
}

// cursorSpy counts list calls that carry a cursor.
type cursorSpy struct {
	Store
	seen int
}

func (c *cursorSpy) ListByCustomer(ctx context.Context, id string, limit int, cursor []byte) ([]View, []byte, error) {
	if cursor != nil {
		c.seen++
	}
	return c.Store.ListByCustomer(ctx, id, limit, cursor)
}

func (c *cursorSpy) List(ctx context.Context, limit int, cursor []byte) ([]View, []byte, error) {
	if cursor != nil {
		c.seen++
	}
	return c.Store.List(ctx, limit, cursor)
}

// streamServer serves the API with the given stream limits.
func streamServer(t *testing.T, lim StreamLimits) *httptest.Server {
	t.Helper()
	a := testAPI(NewMemory(), NewHub())
	a.heartbeat, a.poll = time.Hour, time.Hour
	a.streams = newStreamSlots(lim)
	mux := httpx.NewMux(httpx.GuardConfig{})
	a.routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// openStream opens an order stream from source address src (any 127.x address is this machine).
func openStream(t *testing.T, srv *httptest.Server, src string) *http.Response {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/api/orders/" + uuid.NewString() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestStreamCaps opens streams past the per-client and the total cap: 429 with a problem body and
// Retry-After beyond either, and a closed stream frees its slot.
func TestStreamCaps(t *testing.T) {
	srv := streamServer(t, StreamLimits{PerClient: 2, Total: 3, Idle: time.Minute})
	a1, a2 := openStream(t, srv, "127.0.0.2"), openStream(t, srv, "127.0.0.2")
	for _, r := range []*http.Response{a1, a2} {
		if r.StatusCode != 200 {
			t.Fatalf("stream within the caps: %d", r.StatusCode)
		}
	}
	over := openStream(t, srv, "127.0.0.2")
	if over.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if p := problemOf(t, over, http.StatusTooManyRequests); !strings.Contains(p.Detail, "per client") {
		t.Errorf("per-client refusal says %q", p.Detail)
	}
	b1 := openStream(t, srv, "127.0.0.3")
	if b1.StatusCode != 200 {
		t.Fatalf("another client within the total: %d", b1.StatusCode)
	}
	if p := problemOf(t, openStream(t, srv, "127.0.0.4"), http.StatusTooManyRequests); !strings.Contains(p.Detail, "server has 3") {
		t.Errorf("total refusal says %q", p.Detail)
	}
	a1.Body.Close() // the server notices the closed connection and frees the slot
	testkit.Eventually(t, 5*time.Second, "a closed stream's slot freed", func() bool {
		r := openStream(t, srv, "127.0.0.4")
		r.Body.Close()
		return r.StatusCode == 200
	})
	a2.Body.Close()
	b1.Body.Close()
}

// TestIdleStreamIsClosed: a stream whose view does not change for the idle limit ends with an
// end event naming the reason.
func TestIdleStreamIsClosed(t *testing.T) {
	srv := streamServer(t, StreamLimits{PerClient: 2, Total: 2, Idle: 200 * time.Millisecond})
	resp := openStream(t, srv, "127.0.0.1")
	defer resp.Body.Close()
	done := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		done <- lines
	}()
	select {
	case lines := <-done:
		if got := strings.Join(lines, "\n"); !strings.Contains(got, "event: end\ndata: {\"reason\":\"idle\"}") {
			t.Fatalf("stream ended without an idle end event:\n%s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an idle stream stayed open")
	}
}
