package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
)

// Config describes one load run.
type Config struct {
	OrderURL      string        // order-service base URL
	QueryURL      string        // query-api base URL
	Brokers       []string      // Kafka, to see terminal events without polling the API
	Rate          float64       // orders per second
	Duration      time.Duration // how long to send
	MaxInFlight   int           // concurrency cap for POSTs; a send beyond it is counted as an error
	ItemsMin      int
	ItemsMax      int
	RejectShare   float64       // share of orders built to be rejected for stock
	DeclineShare  float64       // share of orders built to be declined by payment (total above 5000)
	CancelShare   float64       // share of accepted orders cancelled at a random moment after placement
	CancelWithin  time.Duration // a cancellation is sent uniformly within this long after the POST's answer
	Customers     int
	Seed          uint64
	Drain         time.Duration // how long to wait for unfinished orders after sending stops
	SummaryFile   string        // JSON summary path ("" = none)
	ProgressEvery time.Duration
}

// Kind is the intended outcome of a generated order.
type Kind string

// The watcher's fetches (see Run): at most one per watchFetchWait unless watchFetchBytes are there.
const (
	watchFetchBytes = 1 << 20
	watchFetchWait  = 20 * time.Millisecond
)

// Order kinds.
const (
	KindSuccess Kind = "success"
	KindReject  Kind = "reject"
	KindDecline Kind = "decline"
)

// Result is the JSON summary of a run.
type Result struct {
	Config        Config           `json:"config"`
	Sent          int64            `json:"sent"`
	Accepted      int64            `json:"accepted"`
	Completed     int64            `json:"completed"`
	Unfinished    int64            `json:"unfinished"`
	Errors        map[string]int64 `json:"errors"`
	ByStatus      map[string]int64 `json:"byStatus"`
	Unexpected    int64            `json:"unexpectedOutcome"`
	Expired       int64            `json:"expired"` // ended CANCELLED without a request: the order deadline (DEADLINE_EXCEEDED)
	SendSeconds   float64          `json:"sendSeconds"`
	Throughput    float64          `json:"achievedOrdersPerSecond"`
	CompletedRate float64          `json:"completedOrdersPerSecond"`
	PostLatency   Summary          `json:"postLatency"`
	EndToEnd      Summary          `json:"endToEndLatency"` // orders not cancelled
	// Cancellations: requests sent, their answers (202, 409, errors), and the time from an accepted
	// request to the view showing its outcome.
	Cancels       map[string]int64 `json:"cancels,omitempty"`
	CancelLatency Summary          `json:"cancelLatency"`
	MaxSchedLagMs float64          `json:"maxSchedulerLagMs"`
	CPUSeconds    float64          `json:"loadGeneratorCpuSeconds"` // this process's own CPU time during the run
	Stages        []Stage          `json:"stages"`
	StagesMissing int              `json:"stagesMissing"` // completed orders whose path was not fully seen
}

type tracked struct {
	kind        Kind
	sentAt      time.Time // scheduled send time: latency includes any queueing, so slow responses cannot hide it
	done        atomic.Bool
	confirmedAt time.Time // set once, by whoever sets done
	// cancelling is set for an order drawn for cancellation until its request is refused (409);
	// such an order ends CANCELLED (or DELIVERED, when the cancellation came too late).
	cancelling  atomic.Bool
	cancelledAt atomic.Int64 // unix nanoseconds of the accepted cancellation's answer
}

// ends reports whether status ends the order's run.
func (t *tracked) ends(status string) bool {
	if t.cancelling.Load() {
		return status == "CANCELLED" || status == "DELIVERED"
	}
	return isTerminal(status)
}

// Run executes the load and prints progress and the summary to out.
func Run(ctx context.Context, cfg Config, out io.Writer) (Result, error) {
	res := Result{Config: cfg, Errors: map[string]int64{}, ByStatus: map[string]int64{}}
	cpu0 := processCPU()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)) //nolint:gosec // a seeded, reproducible order mix
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000, IdleConnTimeout: 90 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	var (
		mu                                    sync.Mutex
		orders                                = map[string]*tracked{}
		early                                 = map[string]time.Time{} // terminal events seen before their order was registered
		post                                  Recorder
		e2e                                   Recorder
		cancelLat                             Recorder
		cancels                               sync.WaitGroup
		errs                                  sync.Map
		inFlight                              atomic.Int64
		sent, accepted, completed, unexpected atomic.Int64
		expired                               atomic.Int64
		statusMu                              sync.Mutex
	)
	countErr := func(kind string) {
		v, _ := errs.LoadOrStore(kind, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	var cancelCodes sync.Map
	countCancel := func(code string) {
		v, _ := cancelCodes.LoadOrStore(code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}

	hops := newHopClock()
	// Terminal events are seen on Kafka; the view is then read until it shows them. The watcher starts
	// at end offsets listed before the first order is sent: a consumer left to resolve "the end" by
	// itself does so at its first fetch, and an order completed before that would never be seen.
	kc := kafka.Config{Brokers: cfg.Brokers, ClientID: "orderflow-loadgen"}
	from, err := endOffsets(ctx, kc, event.MainTopics()...)
	if err != nil {
		return res, err
	}
	// The watcher fetches every 20 ms, in bulk, not the moment a record arrives: the load generator's
	// own consumption stays small, and by the time an order's confirming read starts the projection
	// has usually written the terminal status (one read of the view per order rather than two). An
	// order's end-to-end time can include up to that 20 ms: it errs on the slow side.
	watcher, err := kgo.NewClient(kc.Options(kgo.ConsumePartitions(from), kgo.FetchMinBytes(watchFetchBytes),
		kgo.FetchMaxWait(watchFetchWait))...)
	if err != nil {
		return res, err
	}
	defer watcher.Close()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var checkers sync.WaitGroup
	confirm := func(id string, t *tracked) {
		defer checkers.Done()
		// A long poll: query-api answers the moment its projection has written a terminal status
		// (one request per order, and the view is seen as soon as it shows it). Until the run ends:
		// after an outage of the read model the view can lag the events by minutes, and such an
		// order is late, not lost. Between polls that end without it, pause briefly, then gently.
		seen := time.Now()
		for delay := 2 * time.Millisecond; wctx.Err() == nil; delay = min(delay*2, pollCap(time.Since(seen))) {
			waitFor := terminal
			if t.cancelling.Load() {
				waitFor = []string{"CANCELLED", "DELIVERED"}
			}
			resp, err := client.Get(cfg.QueryURL + "/api/orders/" + id + "?waitFor=" + strings.Join(waitFor, ",") + "&wait=2s")
			if err == nil {
				var v struct{ Status string }
				_ = json.NewDecoder(resp.Body).Decode(&v)
				resp.Body.Close()
				if t.ends(v.Status) {
					if t.done.CompareAndSwap(false, true) {
						t.confirmedAt = time.Now()
						if at := t.cancelledAt.Load(); at != 0 {
							cancelLat.Add(t.confirmedAt.Sub(time.Unix(0, at)))
						} else if !t.cancelling.Load() {
							e2e.Add(t.confirmedAt.Sub(t.sentAt))
						}
						completed.Add(1)
						statusMu.Lock()
						res.ByStatus[v.Status]++
						statusMu.Unlock()
						switch {
						case t.cancelling.Load():
						case v.Status == "CANCELLED":
							expired.Add(1)
						case !expected(t.kind, v.Status):
							unexpected.Add(1)
						}
					}
					return
				}
			}
			time.Sleep(delay)
		}
	}
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		for wctx.Err() == nil {
			f := watcher.PollFetches(wctx)
			f.EachRecord(func(r *kgo.Record) {
				var typ string
				for _, h := range r.Headers {
					if h.Key == "eventType" {
						typ = string(h.Value)
					}
				}
				id := string(r.Key)
				switch event.Type(typ) {
				case event.OrderCreated, event.InventoryReserved, event.PaymentAuthorized:
					hops.observe(id, event.Type(typ), r.Value, false)
					return
				case event.InventoryRejected, event.PaymentFailed, event.DeliveryAssigned:
					hops.observe(id, event.Type(typ), r.Value, true)
				case event.DeliveryCancelled, event.CancellationRefused:
				default:
					return
				}
				mu.Lock()
				t := orders[id]
				if t == nil {
					early[id] = time.Now() // the saga beat the POST response; confirmed on registration
				}
				mu.Unlock()
				if t != nil && !t.done.Load() {
					checkers.Add(1)
					go confirm(id, t)
				}
			})
		}
	}()

	// Progress.
	start := time.Now()
	progressDone := make(chan struct{})
	go func() {
		tk := time.NewTicker(cfg.ProgressEvery)
		defer tk.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-tk.C:
				fmt.Fprintf(out, "[%5.1fs] sent %d accepted %d completed %d in-flight %d\n",
					time.Since(start).Seconds(), sent.Load(), accepted.Load(), completed.Load(), inFlight.Load())
				// Terminal events of orders that are not ours (other clients on the shared topics)
				// never get registered: forget them once no POST response can still be pending.
				mu.Lock()
				for id, seen := range early {
					if time.Since(seen) > time.Minute {
						delete(early, id)
					}
				}
				hops.forget(time.Now().Add(-time.Minute), func(id string) bool { _, ok := orders[id]; return ok })
				mu.Unlock()
			}
		}
	}()

	// Open loop: request i is due at start + i/rate whatever happened to earlier ones.
	total := int(cfg.Rate * cfg.Duration.Seconds())
	var posts sync.WaitGroup
	maxLag := openLoop(ctx, start, cfg.Rate, total, func(i int, due time.Time) {
		kind, body := buildOrder(rng, cfg)
		var cancelAfter time.Duration
		cancel := rng.Float64() < cfg.CancelShare
		if cancel {
			cancelAfter = time.Duration(rng.Int64N(int64(max(cfg.CancelWithin, time.Millisecond))))
		}
		sent.Add(1)
		if inFlight.Load() >= int64(cfg.MaxInFlight) {
			countErr("concurrency cap reached")
			return
		}
		inFlight.Add(1)
		posts.Go(func() {
			defer inFlight.Add(-1)
			resp, err := client.Post(cfg.OrderURL+"/api/orders", "application/json", strings.NewReader(body))
			if err != nil {
				countErr(classify(err))
				return
			}
			var o struct{ OrderID string }
			_ = json.NewDecoder(resp.Body).Decode(&o)
			resp.Body.Close()
			post.Add(time.Since(due))
			if resp.StatusCode != http.StatusCreated || o.OrderID == "" {
				countErr(fmt.Sprintf("HTTP %d", resp.StatusCode))
				return
			}
			accepted.Add(1)
			t := &tracked{kind: kind, sentAt: due}
			if cancel {
				t.cancelling.Store(true)
				cancels.Go(func() {
					time.Sleep(cancelAfter)
					code := sendCancel(ctx, client, cfg.OrderURL, o.OrderID)
					countCancel(code)
					switch code {
					case "202":
						t.cancelledAt.Store(time.Now().UnixNano())
					default: // refused (409: it ended first) or failed: the order runs its course
						t.cancelling.Store(false)
						checkers.Add(1)
						go confirm(o.OrderID, t)
					}
				})
			}
			mu.Lock()
			orders[o.OrderID] = t
			_, seen := early[o.OrderID]
			delete(early, o.OrderID)
			mu.Unlock()
			if seen {
				checkers.Add(1)
				go confirm(o.OrderID, t)
			}
		})
	})
	sendSeconds := time.Since(start).Seconds()
	posts.Wait()
	cancels.Wait()
	// Drain: wait for unfinished orders.
	deadline := time.Now().Add(cfg.Drain)
	for completed.Load() < accepted.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start).Seconds()
	close(progressDone)
	stopWatch()
	<-watcherDone
	checkers.Wait()

	res.Sent, res.Accepted, res.Completed, res.Unexpected = sent.Load(), accepted.Load(), completed.Load(), unexpected.Load()
	res.Unfinished = res.Accepted - res.Completed
	res.Expired = expired.Load()
	res.SendSeconds = sendSeconds
	res.Throughput = float64(res.Accepted) / sendSeconds
	res.CompletedRate = float64(res.Completed) / elapsed
	res.PostLatency, res.EndToEnd, res.CancelLatency = post.Summary(), e2e.Summary(), cancelLat.Summary()
	res.MaxSchedLagMs = float64(maxLag.Microseconds()) / 1e3
	res.CPUSeconds = (processCPU() - cpu0).Seconds()
	errs.Range(func(k, v any) bool { res.Errors[k.(string)] = v.(*atomic.Int64).Load(); return true })
	cancelCodes.Range(func(k, v any) bool {
		if res.Cancels == nil {
			res.Cancels = map[string]int64{}
		}
		res.Cancels[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	done := map[string]*tracked{}
	mu.Lock()
	for id, t := range orders {
		if t.done.Load() {
			done[id] = t
		}
	}
	mu.Unlock()
	res.Stages, res.StagesMissing = hops.stages(done)
	printResult(out, res)
	if cfg.SummaryFile != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.SummaryFile, append(b, '\n'), 0o600); err != nil {
			return res, err
		}
	}
	return res, nil
}

// pollCap bounds the delay between view reads of one order when a read answers without the
// terminal status (a query-api without long polls answers at once, so the delay is then the
// measurement's resolution): 25 ms during the first second, 100 ms up to 5 s, then 1 s once the view
// is clearly behind (thousands of pending orders must not flood query-api).
func pollCap(waited time.Duration) time.Duration {
	switch {
	case waited < time.Second:
		return 25 * time.Millisecond
	case waited < 5*time.Second:
		return 100 * time.Millisecond
	}
	return time.Second
}

// terminal are the view statuses that end the run of an order not being cancelled (CANCELLED: its
// deadline passed).
var terminal = []string{"INVENTORY_REJECTED", "PAYMENT_FAILED", "DELIVERY_ASSIGNED", "DELIVERED", "CANCELLED"}

// sendCancel asks order-service to cancel id and returns the answer's status code, or the
// transport error's class.
func sendCancel(ctx context.Context, client *http.Client, orderURL, id string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, orderURL+"/api/orders/"+id+"/cancel", nil)
	if err != nil {
		return "request error"
	}
	resp, err := client.Do(req)
	if err != nil {
		return classify(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

func isTerminal(s string) bool { return slices.Contains(terminal, s) }

func expected(k Kind, status string) bool {
	switch k {
	case KindReject:
		return status == "INVENTORY_REJECTED"
	case KindDecline:
		return status == "PAYMENT_FAILED"
	}
	return status == "DELIVERY_ASSIGNED" || status == "DELIVERED"
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	}
	return "transport error"
}

// buildOrder draws an order of the configured mix. Rejections order more of a LOW-xxx item than its
// seeded stock (5) holds; declines exceed the gateway's 5000.00 limit.
func buildOrder(rng *rand.Rand, cfg Config) (Kind, string) {
	customer := fmt.Sprintf("load-%d", rng.IntN(max(cfg.Customers, 1)))
	r := rng.Float64()
	type line struct {
		ID    string `json:"itemId"`
		Qty   int    `json:"quantity"`
		Price string `json:"unitPrice"`
	}
	var lines []line
	kind := KindSuccess
	switch {
	case r < cfg.RejectShare:
		kind = KindReject
		lines = append(lines, line{fmt.Sprintf("LOW-%03d", 1+rng.IntN(10)), 6, "9.99"})
	case r < cfg.RejectShare+cfg.DeclineShare:
		kind = KindDecline
		lines = append(lines, line{fmt.Sprintf("SKU-%03d", 1+rng.IntN(50)), 1, "6000.00"})
	default:
		n := cfg.ItemsMin + rng.IntN(cfg.ItemsMax-cfg.ItemsMin+1)
		seen := map[int]bool{}
		for len(lines) < n {
			sku := 1 + rng.IntN(50)
			if seen[sku] {
				continue
			}
			seen[sku] = true
			lines = append(lines, line{fmt.Sprintf("SKU-%03d", sku), 1 + rng.IntN(3), fmt.Sprintf("%d.%02d", 1+rng.IntN(99), rng.IntN(100))})
		}
	}
	b, _ := json.Marshal(map[string]any{"customerId": customer, "currency": "EUR", "items": lines})
	return kind, string(b)
}

func printResult(w io.Writer, r Result) {
	fmt.Fprintf(w, "\n=== load run: %.0f orders/s target for %s ===\n", r.Config.Rate, r.Config.Duration)
	fmt.Fprintf(w, "sent %d, accepted %d, completed %d, unfinished %d, unexpected outcome %d, expired %d\n", r.Sent, r.Accepted, r.Completed, r.Unfinished, r.Unexpected, r.Expired)
	fmt.Fprintf(w, "achieved %.1f orders/s accepted (%.1f completed/s), max scheduler lag %.1f ms\n", r.Throughput, r.CompletedRate, r.MaxSchedLagMs)
	if r.CPUSeconds > 0 && r.SendSeconds > 0 {
		fmt.Fprintf(w, "load generator CPU %.1f s (%.1f%% of a core over the sending time; it shares the machine)\n", r.CPUSeconds, r.CPUSeconds/r.SendSeconds*100)
	}
	p := func(name string, s Summary) {
		fmt.Fprintf(w, "%-22s n=%-6d p50 %8.1f  p90 %8.1f  p99 %8.1f  p99.9 %8.1f  max %8.1f ms\n", name, s.Count, s.P50, s.P90, s.P99, s.P999, s.Max)
	}
	p("POST latency", r.PostLatency)
	p("end-to-end latency", r.EndToEnd)
	if len(r.Cancels) > 0 {
		p("cancel → view", r.CancelLatency)
		fmt.Fprintf(w, "cancellations: %v\n", r.Cancels)
	}
	keys := make([]string, 0, len(r.ByStatus))
	for k := range r.ByStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-20s %d\n", k, r.ByStatus[k])
	}
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "errors: none")
	}
	for k, v := range r.Errors {
		fmt.Fprintf(w, "error %-30s %d\n", k, v)
	}
	printStages(w, r.Stages, r.StagesMissing)
}

// ParseFlags reads the loadgen command line.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := Config{}
	fs.StringVar(&c.OrderURL, "order-url", "http://127.0.0.1:8081", "order-service base URL")
	fs.StringVar(&c.QueryURL, "query-url", "http://127.0.0.1:8080", "query-api base URL")
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka brokers (to observe terminal events)")
	fs.Float64Var(&c.Rate, "rate", 50, "orders per second (open loop)")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long to send")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 512, "most POSTs in flight; sends beyond are counted as errors")
	fs.IntVar(&c.ItemsMin, "items-min", 1, "fewest lines per order")
	fs.IntVar(&c.ItemsMax, "items-max", 3, "most lines per order")
	fs.Float64Var(&c.RejectShare, "reject-share", 0.05, "share of orders built to be rejected for stock")
	fs.Float64Var(&c.DeclineShare, "decline-share", 0.05, "share of orders built to be declined by payment")
	fs.Float64Var(&c.CancelShare, "cancel-share", 0, "share of accepted orders cancelled (POST /api/orders/{id}/cancel) at a random moment after placement")
	fs.DurationVar(&c.CancelWithin, "cancel-within", 2*time.Second, "cancellations are sent uniformly within this long after the order's POST answer")
	fs.IntVar(&c.Customers, "customers", 1000, "distinct customers")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed (same seed, same orders)")
	fs.DurationVar(&c.Drain, "drain", 30*time.Second, "how long to wait for unfinished orders after sending")
	fs.StringVar(&c.SummaryFile, "summary", "", "write a JSON summary to this file")
	fs.DurationVar(&c.ProgressEvery, "progress", 5*time.Second, "progress line interval")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.Brokers = strings.Split(*brokers, ",")
	switch {
	case c.Rate <= 0 || c.Duration <= 0 || c.MaxInFlight <= 0:
		return c, errors.New("rate, duration and max-in-flight must be positive")
	case c.ItemsMin < 1 || c.ItemsMax < c.ItemsMin || c.ItemsMax > 50:
		return c, errors.New("need 1 <= items-min <= items-max <= 50")
	case c.RejectShare < 0 || c.DeclineShare < 0 || c.RejectShare+c.DeclineShare > 1:
		return c, errors.New("reject-share and decline-share must be >= 0 and sum to at most 1")
	case c.CancelShare < 0 || c.CancelShare > 1 || c.CancelWithin < 0:
		return c, errors.New("cancel-share must be between 0 and 1, cancel-within not negative")
	}
	return c, nil
}

// openLoop calls send(i, due) for i in [0, n) at start + i/rate. send must not block (it starts its
// own goroutine): a slow target then cannot delay later sends. It returns the largest lateness.
func openLoop(ctx context.Context, start time.Time, rate float64, n int, send func(i int, due time.Time)) time.Duration {
	interval := time.Duration(float64(time.Second) / rate)
	var maxLag time.Duration
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if -d > maxLag {
			maxLag = -d
		}
		send(i, due)
	}
	return maxLag
}

// endOffsets lists the current end offset of every partition of topics.
func endOffsets(ctx context.Context, kc kafka.Config, topics ...string) (map[string]map[int32]kgo.Offset, error) {
	cl, err := kgo.NewClient(kc.Options()...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: list end offsets: %w", err)
	}
	return ends.KOffsets(), nil
}
