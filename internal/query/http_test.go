package query

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/event"
)

func testServer(t *testing.T, st Store) (*httptest.Server, *Projector) {
	t.Helper()
	hub := NewHub()
	p := NewProjector(st, prometheus.NewRegistry())
	p.Notify = func(id string) { hub.Publish(id, time.Now()) }
	a := testAPI(st, hub)
	a.heartbeat, a.poll = 50*time.Millisecond, time.Hour
	mux := httpx.NewMux(httpx.GuardConfig{})
	a.routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, p
}

// testAPI is query-api's HTTP layer over st with the default limits.
func testAPI(st Store, hub *Hub) *api {
	return &api{store: st, hub: hub, log: slog.New(slog.NewTextHandler(io.Discard, nil)), closing: make(chan struct{}),
		tokens: httpx.NewPageTokens("test"), streams: newStreamSlots(StreamLimits{PerClient: 8, Total: 100, Idle: time.Minute})}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

func TestViewHistoryAndFailurePaths(t *testing.T) {
	srv, p := testServer(t, NewMemory())
	ctx := context.Background()
	id := uuid.NewString()
	evs := withID(saga(t, uuid.NewString()), id)
	for _, e := range evs {
		if err := p.Handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	var v map[string]any
	if code := getJSON(t, srv.URL+"/api/orders/"+id, &v); code != 200 || v["status"] != StatusDeliveryAssigned ||
		v["totalAmount"] != 42.5 || v["paymentId"] != 9.0 || v["driverName"] != "Ada Lovelace" || v["estimatedDeliveryTime"] == nil {
		t.Fatalf("view %d %v", code, v)
	}
	var h struct{ Events []HistoryEntry }
	if code := getJSON(t, srv.URL+"/api/orders/"+id+"/events", &h); code != 200 || len(h.Events) != 7 ||
		h.Events[0].EventType != "order.created" || h.Events[6].EventType != "eta.updated" {
		t.Fatalf("history %d %+v", code, h)
	}
	if code := getJSON(t, srv.URL+"/api/orders/"+uuid.NewString(), &v); code != 404 {
		t.Fatalf("unknown order %d", code)
	}

	// Rejection path.
	rid := uuid.NewString()
	created := withID(saga(t, uuid.NewString()), rid)[0]
	rej, _ := event.Factory{Producer: "inventory-service"}.Caused(created, event.InventoryRejected, event.InventoryPayload{
		OrderID: rid, Amount: event.MustMoney("42.50"), Currency: "EUR", CustomerID: "cust-7", Reason: event.ReasonInsufficientStock,
		Items: []event.RejectedItem{{ItemID: "LOW-001", Requested: 9, Available: 5}}})
	for _, e := range []event.Envelope{rej, created} { // out of order on purpose
		if err := p.Handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	getJSON(t, srv.URL+"/api/orders/"+rid, &v)
	if v["status"] != StatusInventoryRejected || v["rejectionReason"] != event.ReasonInsufficientStock || v["customerId"] != "cust-7" {
		t.Fatalf("rejected view %v", v)
	}
	// Payment failure path.
	fid := uuid.NewString()
	fevs := withID(saga(t, uuid.NewString()), fid)[:2]
	reason := "AMOUNT_LIMIT_EXCEEDED"
	failed, _ := event.Factory{Producer: "payment-service"}.Caused(fevs[1], event.PaymentFailed, event.PaymentPayload{
		PaymentID: 3, OrderID: fid, Amount: event.MustMoney("42.50"), Currency: "EUR", Status: event.PaymentStatusFailed, FailureReason: &reason})
	for _, e := range []event.Envelope{failed, fevs[1], fevs[0]} {
		if err := p.Handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	getJSON(t, srv.URL+"/api/orders/"+fid, &v)
	if v["status"] != StatusPaymentFailed || v["failureReason"] != reason || v["paymentId"] != 3.0 {
		t.Fatalf("failed view %v", v)
	}
}

func TestListByCustomerNewestFirstAndScan(t *testing.T) { listing(t, NewMemory()) }

// TestListingOverCassandra: the same listing on Cassandra, its paging state sealed into the page
// tokens; the issue's own example of a bad token (pageToken=zzzz) is a 400, not a database error.
func TestListingOverCassandra(t *testing.T) {
	st := newCassandra(t)
	listing(t, st)
	srv, _ := testServer(t, st)
	for _, q := range []string{"customerId=cust-7&pageToken=zzzz", "pageToken=zzzz", "customerId=abc&pageToken=" + url.QueryEscape("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")} {
		var p map[string]any
		if code := getJSON(t, srv.URL+"/api/orders?"+q, &p); code != 400 {
			t.Errorf("%s: %d %v, want 400", q, code, p)
		}
	}
}

// listing pages one customer's orders, newest first, and scans all orders, on st.
func listing(t *testing.T, st Store) {
	srv, p := testServer(t, st)
	ctx := context.Background()
	var ids []string
	for i := 0; i < 7; i++ {
		id := uuid.NewString()
		e := withID(saga(t, uuid.NewString()), id)[0]
		e.OccurredAt = e.OccurredAt.Add(time.Duration(i) * time.Minute)
		if err := p.Handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var got []string
	tok := ""
	for pages := 0; pages < 10; pages++ {
		var page struct {
			Orders        []View
			NextPageToken string
		}
		if code := getJSON(t, srv.URL+"/api/orders?customerId=cust-7&limit=3&pageToken="+tok, &page); code != 200 {
			t.Fatalf("list %d", code)
		}
		for _, o := range page.Orders {
			got = append(got, o.OrderID)
		}
		if page.NextPageToken == "" {
			break
		}
		tok = page.NextPageToken
	}
	if len(got) != 7 || got[0] != ids[6] || got[6] != ids[0] {
		t.Fatalf("newest first: got %v", got)
	}
	var scan struct{ Orders []View }
	if code := getJSON(t, srv.URL+"/api/orders?limit=100", &scan); code != 200 || len(scan.Orders) != 7 {
		t.Fatalf("scan %d %d", code, len(scan.Orders))
	}
	if code := getJSON(t, srv.URL+"/api/orders?limit=1000", &scan); code != 400 {
		t.Fatalf("unbounded limit accepted: %d", code)
	}
}

type failingStore struct{ Store }

func (failingStore) Get(context.Context, string) (View, error) {
	return View{}, errors.New("gocql: no hosts available in the pool")
}

func TestReadModelOutageIs503(t *testing.T) {
	srv, _ := testServer(t, failingStore{NewMemory()})
	var p map[string]any
	if code := getJSON(t, srv.URL+"/api/orders/"+uuid.NewString(), &p); code != 503 {
		t.Fatalf("outage answered %d", code)
	}
}

// TestSSEStreamsChanges follows one order over SSE with a real HTTP client while its events are
// applied; the stream ends after the final status.
func TestSSEStreamsChanges(t *testing.T) {
	srv, p := testServer(t, NewMemory())
	id := uuid.NewString()
	evs := withID(saga(t, uuid.NewString()), id)
	resp, err := http.Get(srv.URL + "/api/orders/" + id + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	statuses := make(chan string, 100)
	heartbeats := make(chan struct{}, 100)
	ended := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, ": keep-alive") {
				heartbeats <- struct{}{}
			}
			if strings.HasPrefix(line, "event: end") {
				ended <- line
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok && !strings.Contains(data, `"reason"`) {
				var v View
				_ = json.Unmarshal([]byte(data), &v)
				statuses <- v.Status
			}
		}
		close(statuses)
	}()
	select {
	case <-heartbeats:
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat")
	}
	ctx := context.Background()
	expect := []string{StatusCreated, StatusInventoryReserved, StatusPaymentAuthorized, StatusDeliveryAssigned}
	for i, want := range expect {
		if err := p.Handle(ctx, []event.Envelope{evs[i]}); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-statuses:
			if got != want {
				t.Fatalf("streamed %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no SSE update for %s", want)
		}
	}
	// An ETA update changes the view: streamed although the status stays.
	if err := p.Handle(ctx, []event.Envelope{evs[4]}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-statuses:
		if got != StatusDeliveryAssigned {
			t.Fatalf("eta update streamed status %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no SSE update for the ETA change")
	}
	done, _ := event.Factory{Producer: "delivery-service"}.New(event.DeliveryCompleted, id, event.DeliveryPayload{OrderID: id,
		DeliveryID: "DEL-000000000001", DriverName: "Ada Lovelace", Status: event.DeliveryStatusDelivered, EstimatedDeliveryTime: time.Now()})
	if err := p.Handle(ctx, []event.Envelope{done}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s, ok := <-statuses:
			if !ok {
				if len(ended) == 0 {
					t.Fatal("the stream ended after DELIVERED without an end event")
				}
				return // stream ended after the final status
			}
			if s != StatusDelivered {
				t.Fatalf("unexpected %q", s)
			}
		case <-deadline:
			t.Fatal("stream did not end after DELIVERED")
		}
	}
}

// TestLongPollRead: GET with waitFor and wait answers when the view reaches a wanted status, woken
// by the projection (or by re-reading when another replica applied the event); when wait runs out it
// answers the view as it is; an unknown order is a 404 at once; bad parameters are a 400.
// countingStore counts the view reads, so a test can wait until a long poll has read once.
type countingStore struct {
	Store
	gets atomic.Int32
}

func (c *countingStore) Get(ctx context.Context, id string) (View, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, id)
}

func TestLongPollRead(t *testing.T) {
	st := &countingStore{Store: NewMemory()}
	srv, p := testServer(t, st)
	// readOnce waits until the poll started after reads had been made has read the view once (it is
	// then waiting: what is applied next must wake it or be found by re-reading).
	readOnce := func(reads int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); st.gets.Load() <= reads; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the long poll never read the view")
			}
		}
	}
	ctx := context.Background()
	id := uuid.NewString()
	evs := withID(saga(t, uuid.NewString()), id)
	if err := p.Handle(ctx, []event.Envelope{evs[0]}); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/api/orders/" + id
	type answer struct {
		code   int
		status string
	}
	poll := func(query string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			var v View
			code := getJSON(t, url+"?"+query, &v)
			ch <- answer{code, v.Status}
		}()
		return ch
	}
	expect := func(got <-chan answer, status, missing string) {
		t.Helper()
		select {
		case a := <-got:
			if a.code != 200 || a.status != status {
				t.Fatalf("answer %+v, want 200 %s", a, status)
			}
		case <-time.After(5 * time.Second):
			t.Fatal(missing)
		}
	}
	reads := st.gets.Load()
	got := poll("waitFor=DELIVERY_ASSIGNED,INVENTORY_REJECTED,PAYMENT_FAILED&wait=10s")
	readOnce(reads)
	for _, e := range evs[1:3] {
		if err := p.Handle(ctx, []event.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case a := <-got:
		t.Fatalf("answered %+v before the view was assigned", a)
	case <-time.After(300 * time.Millisecond):
	}
	if err := p.Handle(ctx, []event.Envelope{evs[3]}); err != nil {
		t.Fatal(err)
	}
	expect(got, StatusDeliveryAssigned, "the long poll did not answer when the view was assigned")

	// Applied by another replica (no notification here): found by re-reading.
	other := NewProjector(st, prometheus.NewRegistry())
	done, _ := event.Factory{Producer: "delivery-service"}.New(event.DeliveryCompleted, id, event.DeliveryPayload{OrderID: id,
		DeliveryID: "DEL-000000000001", DriverName: "Ada Lovelace", Status: event.DeliveryStatusDelivered, EstimatedDeliveryTime: time.Now()})
	reads = st.gets.Load()
	got = poll("waitFor=DELIVERED&wait=10s")
	readOnce(reads)
	if err := other.Handle(ctx, []event.Envelope{done}); err != nil {
		t.Fatal(err)
	}
	expect(got, StatusDelivered, "a change applied elsewhere was not found by re-reading")

	// Wait runs out: the view as it is.
	if a := <-poll("waitFor=PAYMENT_FAILED&wait=200ms"); a.code != 200 || a.status != StatusDelivered {
		t.Fatalf("after the wait: %+v", a)
	}
	// An unknown order does not wait (the client would time out after 5 s of a 10 s wait).
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(srv.URL + "/api/orders/" + uuid.NewString() + "?waitFor=DELIVERED&wait=10s")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown order: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, q := range []string{"waitFor=NOPE&wait=1s", "waitFor=DELIVERED&wait=soon", "waitFor=DELIVERED&wait=11s",
		"waitFor=DELIVERED&wait=0s", "waitFor=DELIVERED", "wait=1s", "waitFor=DELIVERED,&wait=1s"} {
		var prob map[string]any
		if code := getJSON(t, url+"?"+q, &prob); code != http.StatusBadRequest || prob["detail"] == nil {
			t.Errorf("%s: %d %v", q, code, prob)
		}
	}
}

// TestWatchDoesNotStartTheBroadcast: long-poll reads wake on local projections only; SSE streams
// start the broadcast consumer.
func TestWatchDoesNotStartTheBroadcast(t *testing.T) {
	h := NewHub()
	ch, cancel := h.Watch("o1")
	h.Publish("o1", time.Now())
	select {
	case <-ch:
	default:
		t.Fatal("a watcher was not woken")
	}
	if len(h.wanted) != 0 || !h.idleSince(0) {
		t.Fatal("a watcher asked for the broadcast consumer")
	}
	cancel()
	_, stop := h.Subscribe("o1")
	if len(h.wanted) != 1 || h.idleSince(0) {
		t.Fatal("a stream did not ask for the broadcast consumer")
	}
	stop()
	if !h.idleSince(0) {
		t.Fatal("the hub is not idle after the last stream left")
	}
}
