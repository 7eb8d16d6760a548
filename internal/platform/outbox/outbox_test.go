package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/outbox"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/testkit"
)

func openDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	c := testkit.NewDatabase(t)
	pool, err := pg.Open(testkit.Context(t, 30*time.Second), c, outbox.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func startRelay(t *testing.T, pool *pgxpool.Pool) (stop func()) {
	t.Helper()
	return startRelayWith(t, pool, prometheus.NewRegistry(), 200*time.Millisecond)
}

func startRelayWith(t *testing.T, pool *pgxpool.Pool, reg *prometheus.Registry, poll time.Duration) (stop func()) {
	t.Helper()
	prod := testkit.Client(t, kgo.ProducerLinger(0))
	r := outbox.NewRelay(pool, prod, slog.New(slog.NewTextHandler(io.Discard, nil)), reg,
		outbox.RelayConfig{PollInterval: poll, LeaderRetry: 200 * time.Millisecond, BatchSize: 50})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// tail consumes topic from its current end, keeping records whose key is in keys.
type tail struct {
	mu   sync.Mutex
	recs []*kgo.Record
}

func startTail(t *testing.T, topic string, keys map[string]bool) *tail {
	t.Helper()
	ctx := testkit.Context(t, 2*time.Minute)
	adm := kadm.NewClient(testkit.Client(t))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) { offsets[topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	cl := testkit.Client(t, kgo.ConsumePartitions(offsets))
	tl := &tail{}
	go func() {
		for ctx.Err() == nil {
			f := cl.PollFetches(ctx)
			f.EachRecord(func(r *kgo.Record) {
				if keys[string(r.Key)] {
					tl.mu.Lock()
					tl.recs = append(tl.recs, r)
					tl.mu.Unlock()
				}
			})
		}
	}()
	return tl
}

func (tl *tail) snapshot() []*kgo.Record {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]*kgo.Record(nil), tl.recs...)
}

// envelope builds a valid order.created (these tests publish to the real topic, which the services
// consume) whose customerId carries the sequence number. The item is unknown, so a running
// inventory-service rejects it harmlessly.
func envelope(t *testing.T, orderID string, seq int) event.Envelope {
	e, err := event.Factory{Producer: "test"}.New(event.OrderCreated, orderID, event.OrderCreatedPayload{
		CustomerID: strconv.Itoa(seq), TotalAmount: event.MustMoney("1.00"), Currency: "EUR",
		Items: []event.Item{{ItemID: "TEST-UNKNOWN", Quantity: 1, UnitPrice: event.MustMoney("1.00")}}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRolledBackTransactionPublishesNothing(t *testing.T) {
	testkit.Integration(t)
	pool := openDB(t)
	ctx := testkit.Context(t, 60*time.Second)
	rolledBack, committed := testkit.Name("rb"), testkit.Name("ok")
	tl := startTail(t, event.TopicOrders, map[string]bool{rolledBack: true, committed: true})
	err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error {
		if err := outbox.Caused(tx, envelope(t, rolledBack, 1)); err != nil {
			return err
		}
		tx.Writes.Queue("SELECT 1 / 0") // the transaction fails after the outbox rows
		return nil
	})
	if err == nil {
		t.Fatal("a transaction with a failing statement committed")
	}
	if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, envelope(t, committed, 1)) }); err != nil {
		t.Fatal(err)
	}
	startRelay(t, pool)
	testkit.Eventually(t, 30*time.Second, "committed event published", func() bool { return len(tl.snapshot()) >= 1 })
	var pending int
	testkit.Eventually(t, 10*time.Second, "row marked sent", func() bool {
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&pending)
		return pending == 0
	})
	recs := tl.snapshot()
	if len(recs) != 1 || string(recs[0].Key) != committed {
		t.Fatalf("published %d records, first key %q", len(recs), recs[0].Key)
	}
	e, err := event.Decode(recs[0].Value)
	if err != nil || e.ProducedAt.Before(e.OccurredAt) || e.ProducedAt.IsZero() {
		t.Fatalf("producedAt not set: %+v %v", e, err)
	}
	hdr := map[string]string{}
	for _, h := range recs[0].Headers {
		hdr[h.Key] = string(h.Value)
	}
	if hdr["eventType"] != "order.created" || hdr["eventId"] != e.EventID || hdr["correlationId"] != committed {
		t.Fatalf("headers %v", hdr)
	}
}

// TestTwoRelaysKeepPerOrderCommitOrder writes 1,000 events for 50 orders (each order's events in
// successive transactions, orders concurrently) while two relays run; the active one is stopped
// half-way so the standby takes over. Every order's events arrive complete and in commit order.
func TestTwoRelaysKeepPerOrderCommitOrder(t *testing.T) {
	testkit.Integration(t)
	pool := openDB(t)
	ctx := testkit.Context(t, 2*time.Minute)
	const orders, perOrder = 50, 20
	keys := map[string]bool{}
	ids := make([]string, orders)
	for i := range ids {
		ids[i] = testkit.Name(fmt.Sprintf("o%d", i))
		keys[ids[i]] = true
	}
	tl := startTail(t, event.TopicOrders, keys)
	stopA := startRelay(t, pool)
	startRelay(t, pool)

	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for seq := 0; seq < perOrder; {
				// Some transactions carry two events, as delivery's assigned+eta does.
				envs := []event.Envelope{envelope(t, id, seq)}
				seq++
				if seq%3 == 0 && seq < perOrder {
					envs = append(envs, envelope(t, id, seq))
					seq++
				}
				if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, envs...) }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	testkit.Eventually(t, 60*time.Second, "half published", func() bool { return len(tl.snapshot()) >= orders*perOrder/2 })
	stopA() // the standby must take over; A's unmarked rows are republished by B
	wg.Wait()
	testkit.Eventually(t, 60*time.Second, "all events published", func() bool {
		n := 0
		for _, s := range seqs(tl.snapshot()) {
			n += len(s)
		}
		return n == orders*perOrder
	})
	for id, seqs := range seqs(tl.snapshot()) {
		for i, s := range seqs {
			if s != i {
				t.Fatalf("order %s: events out of commit order: %v", id, seqs)
			}
		}
	}
}

// counter reads a counter of reg by name (0 when absent).
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func unsent(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// seqs returns the customerId (the test's sequence number) of each first-seen event per key.
func seqs(recs []*kgo.Record) map[string][]int {
	got := map[string][]int{}
	seen := map[string]bool{}
	for _, r := range recs {
		var e struct {
			EventID string `json:"eventId"`
			Payload struct {
				CustomerID string `json:"customerId"`
			}
		}
		_ = json.Unmarshal(r.Value, &e)
		if seen[e.EventID] {
			continue // a republished duplicate; consumers dedupe by eventId
		}
		seen[e.EventID] = true
		seq, _ := strconv.Atoi(strings.TrimRight(e.Payload.CustomerID, "x"))
		got[string(r.Key)] = append(got[string(r.Key)], seq)
	}
	return got
}

// quietRelay opens a fresh database, starts a tail on orderID's events and a relay whose
// safety-net read is a minute away, and waits until the relay is active; reads counts its table
// reads from then on.
func quietRelay(t *testing.T, orderID string) (pool *pgxpool.Pool, tl *tail, reads func() float64) {
	t.Helper()
	testkit.Integration(t)
	pool = openDB(t)
	tl = startTail(t, event.TopicOrders, map[string]bool{orderID: true})
	reg := prometheus.NewRegistry()
	startRelayWith(t, pool, reg, time.Minute)
	testkit.Eventually(t, 20*time.Second, "relay active and past its first read", func() bool {
		return counter(t, reg, "outbox_table_reads_total") >= 1
	})
	start := counter(t, reg, "outbox_table_reads_total")
	return pool, tl, func() float64 { return counter(t, reg, "outbox_table_reads_total") - start }
}

// Events travel in their NOTIFY: once the relay is active, it publishes and marks them without
// reading the table (the safety-net read is set to a minute here).
func TestNotificationsCarryTheEvents(t *testing.T) {
	id := testkit.Name("carried")
	pool, tl, reads := quietRelay(t, id)
	ctx := testkit.Context(t, 60*time.Second)
	for seq := 0; seq < 30; seq += 3 {
		envs := []event.Envelope{envelope(t, id, seq), envelope(t, id, seq+1), envelope(t, id, seq+2)}
		if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, envs...) }); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, "30 events published and marked", func() bool {
		return len(tl.snapshot()) >= 30 && unsent(t, pool) == 0
	})
	if n := reads(); n != 0 {
		t.Fatalf("table read %v times after start; the notifications carry the events", n)
	}
	if got := seqs(tl.snapshot())[id]; len(got) != 30 || !slices.IsSorted(got) || len(tl.snapshot()) != 30 {
		t.Fatalf("published %d records, order %v", len(tl.snapshot()), got)
	}
}

// A transaction whose NOTIFY follows its COMMIT (QueueRows) may be notified after a later one. A
// writer not caused by the earlier event (delivery's scheduler) uses Timed, whose notification
// makes the relay read the table: the earlier row still goes out first, and its late notification
// publishes nothing again.
func TestTableNoticeGoesAfterALateNotice(t *testing.T) {
	id := testkit.Name("late")
	pool, tl, reads := quietRelay(t, id)
	ctx := testkit.Context(t, 60*time.Second)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	late, err := outbox.QueueRows(b, envelope(t, id, 0))
	if err != nil {
		t.Fatal(err)
	}
	b.Queue("COMMIT") // committed; its NOTIFY is held back below
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Timed(tx, envelope(t, id, 1)) }); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "both events published", func() bool { return len(tl.snapshot()) >= 2 })
	if got := seqs(tl.snapshot())[id]; !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("order %v, want [0 1]", got)
	}
	if n := reads(); n < 1 {
		t.Fatal("the table was not read for the notification without events")
	}
	// The held-back NOTIFY arrives now, then a regular transaction's: once that one is published, the
	// late one has been handled (notifications are handled in order) and skipped.
	lb := &pgx.Batch{}
	late(lb)
	if err := pool.SendBatch(ctx, lb).Close(); err != nil {
		t.Fatal(err)
	}
	if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, envelope(t, id, 2)) }); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "third event published and all marked", func() bool {
		return len(seqs(tl.snapshot())[id]) >= 3 && unsent(t, pool) == 0
	})
	if got := seqs(tl.snapshot())[id]; !slices.Equal(got, []int{0, 1, 2}) || len(tl.snapshot()) != 3 {
		t.Fatalf("order %v in %d records, want 0, 1, 2 once each", got, len(tl.snapshot()))
	}
}

// An event too large for a NOTIFY payload is read from the table; it and the events around it (in
// the same transaction and in later ones) still go out in commit order.
func TestOversizedEventsKeepCommitOrder(t *testing.T) {
	id := testkit.Name("big")
	pool, tl, reads := quietRelay(t, id)
	ctx := testkit.Context(t, 60*time.Second)
	big := func(seq int) event.Envelope {
		e := envelope(t, id, seq)
		e2, err := event.Factory{Producer: "test"}.New(event.OrderCreated, id, event.OrderCreatedPayload{
			CustomerID: strconv.Itoa(seq) + strings.Repeat("x", 9000), TotalAmount: event.MustMoney("1.00"), Currency: "EUR",
			Items: []event.Item{{ItemID: "TEST-UNKNOWN", Quantity: 1, UnitPrice: event.MustMoney("1.00")}}})
		if err != nil {
			t.Fatal(err)
		}
		e2.EventID = e.EventID
		return e2
	}
	txs := [][]event.Envelope{
		{envelope(t, id, 0)},
		{big(1)},
		{envelope(t, id, 2), big(3), envelope(t, id, 4)},
		{envelope(t, id, 5)},
	}
	for _, envs := range txs {
		if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, envs...) }); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, "6 events published and marked", func() bool {
		return len(seqs(tl.snapshot())[id]) >= 6 && unsent(t, pool) == 0
	})
	if got := seqs(tl.snapshot())[id]; !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) || len(tl.snapshot()) != 6 {
		t.Fatalf("order %v in %d records, want 0..5 once each", got, len(tl.snapshot()))
	}
	if n := reads(); n < 2 {
		t.Fatalf("table read %v times for two oversized transactions", n)
	}
}

// A notification the relay cannot decode (not written by Queue) stands for rows in the table: they
// are read at that point, before the events of later notifications.
func TestUndecodableNotificationReadsTheTable(t *testing.T) {
	id := testkit.Name("foreign")
	pool, tl, reads := quietRelay(t, id)
	ctx := testkit.Context(t, 60*time.Second)
	first := envelope(t, id, 0)
	v, err := first.Encode()
	if err != nil {
		t.Fatal(err)
	}
	err = pg.InTx(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO outbox (event_id, event_type, topic, record_key, value) VALUES ($1, $2, $3, $4, $5)`,
			first.EventID, string(first.EventType), event.TopicOrders, id, v); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, 'not json')`, outbox.NotifyChannel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Timed(tx, envelope(t, id, 1)) }); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "2 events published and marked", func() bool {
		return len(tl.snapshot()) >= 2 && unsent(t, pool) == 0
	})
	if got := seqs(tl.snapshot())[id]; !slices.Equal(got, []int{0, 1}) || len(tl.snapshot()) != 2 {
		t.Fatalf("order %v in %d records, want 0, 1 once each", got, len(tl.snapshot()))
	}
	if n := reads(); n < 1 {
		t.Fatal("the table was not read for the undecodable notification")
	}
}

// A NOTIFY queued after the COMMIT (by hand, or outbox.Caused in a pg.BatchTx, as every saga writer
// does) reaches the listener only for a batch that committed, and
// when it arrives the rows are already visible; a batch that fails before its COMMIT sends none.
func TestNoticeAfterCommitOnlyForCommittedRows(t *testing.T) {
	testkit.Integration(t)
	pool := openDB(t)
	senders := map[string]func(ctx context.Context, e event.Envelope, fail bool) error{
		"batch": func(ctx context.Context, e event.Envelope, fail bool) error {
			b := &pgx.Batch{}
			b.Queue("BEGIN")
			n, err := outbox.QueueRows(b, e)
			if err != nil {
				t.Fatal(err)
			}
			if fail {
				b.Queue("SELECT 1 / 0")
			}
			b.Queue("COMMIT")
			n(b)
			return pool.SendBatch(ctx, b).Close()
		},
		"batchtx": func(ctx context.Context, e event.Envelope, fail bool) error {
			return pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error {
				if err := tx.Read(ctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: "SELECT 1"}}}); err != nil {
					return err
				}
				if err := outbox.Caused(tx, e); err != nil {
					t.Fatal(err)
				}
				if fail {
					tx.Writes.Queue("SELECT 1 / 0")
				}
				return nil
			})
		},
	}
	for name, send := range senders {
		t.Run(name, func(t *testing.T) {
			ctx := testkit.Context(t, 60*time.Second)
			listener, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer listener.Release()
			if _, err := listener.Exec(ctx, "LISTEN "+pgx.Identifier{outbox.NotifyChannel}.Sanitize()); err != nil {
				t.Fatal(err)
			}
			defer func() { _, _ = listener.Exec(context.Background(), "UNLISTEN *") }()
			rows := func(id string) (n int) {
				if err := listener.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE record_key = $1`, id).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}

			failed, committed := testkit.Name("failed"), testkit.Name("committed")
			if err := send(ctx, envelope(t, failed, 1), true); err == nil {
				t.Fatal("a batch with a failing statement succeeded")
			}
			if err := send(ctx, envelope(t, committed, 1), false); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			note, err := listener.Conn().WaitForNotification(wctx)
			if err != nil {
				t.Fatalf("no notification for the committed batch: %v", err)
			}
			// The failed batch had finished before the committed one was sent, so a NOTIFY of its would
			// have been queued, and delivered, first.
			if !strings.Contains(note.Payload, committed) || strings.Contains(note.Payload, failed) {
				t.Fatalf("first notification is not the committed batch's: %.200q", note.Payload)
			}
			if rows(committed) != 1 {
				t.Fatal("notified before the row was visible")
			}
			if rows(failed) != 0 {
				t.Fatal("the failed batch left a row")
			}
		})
	}
}

// TestCausedRefusesEventsWithoutACause: an event that names no cause and does not open its order
// (a timer's) cannot take the caused door, whose late NOTIFY could let it overtake an earlier event
// of its order; nothing of the transaction is written. Timed takes it.
func TestCausedRefusesEventsWithoutACause(t *testing.T) {
	testkit.Integration(t)
	pool := openDB(t)
	ctx := testkit.Context(t, 30*time.Second)
	id := testkit.Name("door")
	f := event.Factory{Producer: "test"}
	p := event.DeliveryPayload{OrderID: id, DeliveryID: "DEL-1", DriverName: "d", Status: event.DeliveryStatusAssigned,
		EstimatedDeliveryTime: time.Now().UTC()}
	timer, err := f.New(event.ETAUpdated, id, p)
	if err != nil {
		t.Fatal(err)
	}
	caused, err := f.Caused(envelope(t, id, 0), event.DeliveryAssigned, p)
	if err != nil {
		t.Fatal(err)
	}
	err = pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, caused, timer) })
	if !errors.Is(err, outbox.ErrUncaused) {
		t.Fatalf("caused door with a timer's event: %v, want ErrUncaused", err)
	}
	rows := func() (n int) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE record_key = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := rows(); n != 0 {
		t.Fatalf("%d rows written by a refused transaction", n)
	}
	if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, caused) }); err != nil {
		t.Fatal(err)
	}
	if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Timed(tx, timer) }); err != nil {
		t.Fatal(err)
	}
	if n := rows(); n != 2 {
		t.Fatalf("%d rows, want the caused and the timed event", n)
	}
}

// TestRowsOfTypesUnknownToThisVersionAreRelayed: during a rolling upgrade a newer replica writes
// event types this version does not know. Whichever replica's relay is active publishes them by the
// row's topic (a notification naming such a type is answered by a table read) instead of stalling
// the outbox behind them.
func TestRowsOfTypesUnknownToThisVersionAreRelayed(t *testing.T) {
	id := testkit.Name("future")
	pool, _, reads := quietRelay(t, id)
	ctx := testkit.Context(t, 60*time.Second)
	tl := startTail(t, event.TopicDelivery, map[string]bool{id: true})
	future, err := event.Factory{Producer: "test"}.New("test.future-type", id, map[string]string{"note": "from a newer version"})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := future.Encode()
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO outbox (event_id, event_type, topic, record_key, value) VALUES ($1, $2, $3, $4, $5)`,
		future.EventID, string(future.EventType), event.TopicDelivery, id, v)
	b.Queue(`SELECT pg_notify($1, $2)`, outbox.NotifyChannel, outbox.Frame(future, v))
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	// A known event after it still goes out, after it.
	if err := pg.InBatchTx(ctx, pool, func(tx *pg.BatchTx) error { return outbox.Caused(tx, envelope(t, id, 1)) }); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "the unknown type published and every row marked", func() bool {
		return len(tl.snapshot()) >= 1 && unsent(t, pool) == 0
	})
	rec := tl.snapshot()[0]
	var got event.Envelope
	if err := json.Unmarshal(rec.Value, &got); err != nil || got.EventID != future.EventID || got.EventType != future.EventType {
		t.Fatalf("published %s (%v), want the row of the unknown type", rec.Value, err)
	}
	if n := reads(); n < 1 {
		t.Fatal("the notification naming an unknown type was not answered by a table read")
	}
}
