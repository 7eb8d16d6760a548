package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/kafka"
)

type api struct {
	store     Store
	hub       *Hub
	kafka     kafka.Config
	log       *slog.Logger
	heartbeat time.Duration     // SSE comment interval, default 15s
	poll      time.Duration     // SSE safety-net re-read interval, default 2s
	closing   <-chan struct{}   // closed when the server shuts down: streams end
	orderAPI  string            // where the tracking page posts orders
	catalog   []pageItem        // items the tracking page offers
	tokens    *httpx.PageTokens // seal the listing's cursors into page tokens
	streams   *streamSlots      // caps on open order streams
	traces    *traces           // the trace backend the page's waterfall reads (nil: none)
}

func (a *api) routes(mux *httpx.Mux) {
	mux.Operator("GET /api/orders", a.list)
	mux.Customer("GET /api/orders/{orderId}", a.get)
	mux.Customer("GET /api/orders/{orderId}/events", a.history)
	mux.Customer("GET /api/orders/{orderId}/stream", a.stream)
	mux.Operator("GET /api/orders/{orderId}/trace", a.trace)
	mux.Operator("GET /api/dlq", a.dlqTopics)
	mux.Operator("GET /api/dlq/{topic}", a.dlqRecords)
	mux.Operator("POST /api/dlq/{topic}/replay", a.dlqReplay)
	a.pageRoutes(mux)
}

func orderID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("orderId")
	if !httpx.ValidID(id, event.MaxOrderIDLen) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "orderId must be 1 to 64 characters"))
		return "", false
	}
	return id, true
}

// unavailable answers 503 for a read-model outage: never a 404, the order may well exist.
func (a *api) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	httpx.Unavailable(w, r, a.log, "read model", err)
}

// maxWait bounds a long-poll read (?wait=).
const maxWait = 10 * time.Second

// statusNames lists the view's statuses in saga order, for error messages.
func statusNames() string { return strings.Join(event.OrderStatuses(), ", ") }

// waitParams reads ?waitFor=STATUS[,STATUS...]&wait=DURATION: the read may be held until the view
// shows one of the statuses, for at most wait.
func waitParams(r *http.Request) (want map[string]bool, wait time.Duration, p *httpx.Problem) {
	q := r.URL.Query()
	wf, ws := q.Get("waitFor"), q.Get("wait")
	if wf == "" && ws == "" {
		return nil, 0, nil
	}
	if wf == "" || ws == "" {
		return nil, 0, httpx.NewProblem(http.StatusBadRequest, "waitFor and wait go together")
	}
	want = map[string]bool{}
	for _, st := range strings.Split(wf, ",") {
		if _, ok := event.StatusRank(st); !ok {
			return nil, 0, httpx.NewProblem(http.StatusBadRequest, "waitFor: unknown status "+strconv.Quote(st)+"; one of "+statusNames())
		}
		want[st] = true
	}
	wait, err := time.ParseDuration(ws)
	if err != nil || wait <= 0 || wait > maxWait {
		return nil, 0, httpx.NewProblem(http.StatusBadRequest, "wait must be a duration above 0 and at most "+maxWait.String()+", e.g. 2s")
	}
	return want, wait, nil
}

// get answers the view. With waitFor and wait (a long poll) it answers as soon as the view shows one
// of the statuses, or with the view as it is when wait runs out; an unknown order answers 404 at once.
// This replica's projection wakes the read the moment it has written the order; events applied by
// another replica are found by re-reading (at most 100 ms apart).
func (a *api) get(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	want, wait, prob := waitParams(r)
	if prob != nil {
		httpx.WriteProblem(w, r, prob)
		return
	}
	var (
		wake  <-chan time.Time
		until <-chan time.Time
		poll  = 10 * time.Millisecond
	)
	if want != nil {
		var cancel func()
		wake, cancel = a.hub.Watch(id) // before the first read: a write in between still wakes us
		defer cancel()
		t := time.NewTimer(wait)
		defer t.Stop()
		until = t.C
	}
	for {
		v, err := a.store.Get(r.Context(), id)
		switch {
		case errors.Is(err, ErrNotFound):
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no order "+id+" (yet): events reach the read model within moments of the POST"))
			return
		case err != nil:
			a.unavailable(w, r, err)
			return
		case want == nil || want[v.Status]:
			httpx.WriteJSON(w, http.StatusOK, v)
			return
		}
		select {
		case <-wake:
		case <-time.After(poll):
			poll = min(2*poll, 100*time.Millisecond)
		case <-until:
			httpx.WriteJSON(w, http.StatusOK, v)
			return
		case <-a.closing:
			httpx.WriteJSON(w, http.StatusOK, v)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (a *api) history(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	h, err := a.store.History(r.Context(), id)
	switch {
	case err != nil:
		a.unavailable(w, r, err)
	case len(h) == 0:
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no events for order "+id))
	default:
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"orderId": id, "events": h})
	}
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 20
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "limit must be an integer from 1 to 100"))
			return
		}
		limit = n
	}
	customer := q.Get("customerId")
	if q.Has("customerId") && !httpx.ValidID(customer, 64) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "customerId must be 1 to 64 characters of UTF-8 text"))
		return
	}
	// A token belongs to one listing: all orders, or one customer's.
	scope := "orders"
	if customer != "" {
		scope = "orders-of-customer\x00" + customer
	}
	cursor, err := a.tokens.Open(scope, q.Get("pageToken"))
	if err != nil {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest,
			"pageToken is not one this listing issued: pass nextPageToken from the previous page unchanged, with the same customerId"))
		return
	}
	var views []View
	var next []byte
	if customer != "" {
		views, next, err = a.store.ListByCustomer(r.Context(), customer, limit, cursor)
	} else {
		views, next, err = a.store.List(r.Context(), limit, cursor)
	}
	if err != nil {
		a.unavailable(w, r, err)
		return
	}
	if views == nil {
		views = []View{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"orders": views, "nextPageToken": a.tokens.Seal(scope, next)})
}

// stream serves Server-Sent Events: an "order" event with the view whenever it changes, a comment
// heartbeat, until the client disconnects, the order reaches a final state (DELIVERED or a
// failure) and the server has sent it, or nothing changed for the idle limit. The last two end
// with an "end" event saying why, so a browser closes its EventSource instead of reconnecting.
// Open streams are capped per client address and in total (429 beyond).
func (a *api) stream(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusInternalServerError, "streaming unsupported"))
		return
	}
	client := httpx.ClientKey(r)
	if why := a.streams.acquire(client); why != "" {
		w.Header().Set("Retry-After", "10")
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusTooManyRequests, why))
		return
	}
	defer a.streams.release(client)
	heartbeat, poll := a.heartbeat, a.poll
	if heartbeat <= 0 {
		heartbeat = 15 * time.Second
	}
	if poll <= 0 {
		poll = 2 * time.Second
	}
	wake, cancel := a.hub.Subscribe(id)
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n\n")
	fl.Flush()

	var last []byte
	idle := time.NewTimer(a.streams.idle)
	defer idle.Stop()
	end := func(reason string) {
		fmt.Fprintf(w, "event: end\ndata: {\"reason\":%q}\n\n", reason)
		fl.Flush()
	}
	send := func() (final bool, err error) {
		v, err := a.store.Get(r.Context(), id)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		b, _ := json.Marshal(v)
		if !slices.Equal(b, last) {
			last = b
			if _, err := fmt.Fprintf(w, "event: order\ndata: %s\n\n", b); err != nil {
				return false, err
			}
			fl.Flush()
			idle.Reset(a.streams.idle)
		}
		final = v.Status == StatusDelivered || v.Status == StatusInventoryRejected || v.Status == StatusPaymentFailed
		if final {
			end("final")
		}
		return final, nil
	}
	// reflect re-reads until the view has caught up with an event seen on the broadcast (it may be
	// applied by another replica a moment later), with short growing pauses.
	reflect := func(occ time.Time) (bool, error) {
		for delay := 10 * time.Millisecond; ; delay *= 2 {
			final, err := send()
			if err != nil || final {
				return final, err
			}
			var lastAt time.Time
			var v View
			if err := json.Unmarshal(last, &v); err == nil && v.LastEventAt != nil {
				lastAt = *v.LastEventAt
			}
			if !lastAt.Before(occ.Truncate(time.Millisecond)) || delay > time.Second {
				return false, nil
			}
			select {
			case <-r.Context().Done():
				return false, r.Context().Err()
			case <-time.After(delay):
			}
		}
	}
	if final, err := send(); err != nil || final {
		return
	}
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		var final bool
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-a.closing:
			return
		case occ := <-wake:
			final, err = reflect(occ)
		case <-tick.C:
			final, err = send()
		case <-beat.C:
			_, err = fmt.Fprintf(w, ": keep-alive\n\n")
			fl.Flush()
		case <-idle.C:
			end("idle")
			return
		}
		if err != nil || final {
			return
		}
	}
}

func (a *api) dlqTopics(w http.ResponseWriter, r *http.Request) {
	counts, err := kafka.DLQCounts(r.Context(), a.kafka, event.DLQTopics()...)
	if err != nil {
		httpx.Unavailable(w, r, a.log, "Kafka cluster", err)
		return
	}
	type topic struct {
		Topic string `json:"topic"`
		Count int64  `json:"count"`
	}
	out := []topic{}
	for _, t := range event.DLQTopics() {
		out = append(out, topic{t, counts[t]})
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"topics": out})
}

func dlqTopic(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.PathValue("topic")
	if !event.IsDLQ(t) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, fmt.Sprintf("%q is not a dead-letter topic", t)))
		return "", false
	}
	return t, true
}

func (a *api) dlqRecords(w http.ResponseWriter, r *http.Request) {
	t, ok := dlqTopic(w, r)
	if !ok {
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, "limit must be an integer from 1 to 1000"))
			return
		}
		limit = n
	}
	recs, err := kafka.ReadDLQ(r.Context(), a.kafka, t, limit)
	if err != nil {
		httpx.Unavailable(w, r, a.log, "Kafka cluster", err)
		return
	}
	if recs == nil {
		recs = []kafka.DLQRecord{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"topic": t, "records": recs})
}

func (a *api) dlqReplay(w http.ResponseWriter, r *http.Request) {
	t, ok := dlqTopic(w, r)
	if !ok {
		return
	}
	var body struct {
		EventIDs []string `json:"eventIds"`
		All      bool     `json:"all"`
	}
	if p := httpx.DecodeJSON(w, r, 64<<10, &body); p != nil {
		httpx.WriteProblem(w, r, p)
		return
	}
	if body.All == (len(body.EventIDs) > 0) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusBadRequest, `give either "eventIds" or "all": true`))
		return
	}
	recs, err := kafka.ReadDLQ(r.Context(), a.kafka, t, 0)
	if err != nil {
		httpx.Unavailable(w, r, a.log, "Kafka cluster", err)
		return
	}
	n, err := kafka.Replay(r.Context(), a.kafka, recs, func(d kafka.DLQRecord) bool {
		return body.All || slices.Contains(body.EventIDs, d.EventID)
	})
	if err != nil {
		a.log.Warn("dlq replay stopped", "topic", t, "replayed", n)
		httpx.Unavailable(w, r, a.log, "Kafka cluster", err)
		return
	}
	a.log.Info("dlq replay", "topic", t, "records", n)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"topic": t, "replayed": n})
}
