package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/service"
	"github.com/orderflow/orderflow/internal/testkit"
)

// TestRebuildEqualsLiveProjection projects 500 orders live (events shuffled), publishes the same
// events to four topics of its own (standing in for the main topics, which hold whatever earlier runs
// left), rebuilds a second keyspace from them, and compares every row.
func TestRebuildEqualsLiveProjection(t *testing.T) {
	live := newCassandra(t)
	ctx := testkit.Context(t, 5*time.Minute)
	rng := rand.New(rand.NewPCG(7, 7))
	const orders = 500
	var all []event.Envelope
	var ids []string
	for i := 0; i < orders; i++ {
		id := uuid.NewString()
		ids = append(ids, id)
		evs := withID(saga(t, uuid.NewString()), id)
		switch i % 5 { // a mix of complete and partial sagas
		case 3:
			evs = evs[:2]
		case 4:
			evs = evs[:4]
		}
		all = append(all, evs...)
	}
	own, produce := ownMainTopics(t)
	produce(ctx, all)
	proj := NewProjector(live, prometheus.NewRegistry())
	for _, i := range rng.Perm(len(all)) {
		if err := proj.Handle(ctx, []event.Envelope{all[i]}); err != nil {
			t.Fatal(err)
		}
	}

	target := testkit.CassandraConfig(t)
	cfg := rebuildConfig(t, target.Keyspace)
	var out bytes.Buffer
	if err := rebuild(ctx, cfg, own, &out, RebuildOptions{}); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out.String())
	}
	rebuilt := newCassandraKeyspace(t, target.Keyspace)
	for _, id := range ids {
		a, errA := live.Get(ctx, id)
		b, errB := rebuilt.Get(ctx, id)
		if errA != nil || errB != nil {
			t.Fatalf("%s: live %v rebuilt %v", id, errA, errB)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			t.Fatalf("%s differs:\nlive    %s\nrebuilt %s", id, ja, jb)
		}
		ha, _ := live.History(ctx, id)
		hb, _ := rebuilt.History(ctx, id)
		if len(ha) != len(hb) {
			t.Fatalf("%s history %d vs %d", id, len(ha), len(hb))
		}
	}
	if want := fmt.Sprintf("%d events replayed", len(all)); !bytes.Contains(out.Bytes(), []byte(want)) {
		t.Fatalf("rebuild output %q, want %q: it replayed other records too", out.String(), want)
	}
	t.Logf("%d orders identical after rebuild: %s", orders, bytes.TrimSpace(out.Bytes()))
}

// TestRebuildKeepsOrdersOlderThanRetention: with a retention of 2 s on the test's topics, the
// events of an old order are deleted by the broker (checked: the topics now start after them), a
// recent order's are still there. The rebuild copies the serving generation and replays the
// topics, so both are served after the switch, the old one exactly as before. --replay-only skips
// the copy and loses the old order: the copy is what keeps it.
func TestRebuildKeepsOrdersOlderThanRetention(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 5*time.Minute)
	base := testkit.CassandraConfig(t).Keyspace
	live := newCassandraKeyspace(t, base)
	own, produce := ownMainTopics(t)
	proj := NewProjector(live, prometheus.NewRegistry())
	// publish sends an order's events to the topics and projects them live, as query-api would.
	publish := func(evs []event.Envelope) {
		produce(ctx, evs)
		if err := proj.Handle(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	// A retention of 2 s while the old order is published (the broker checks retention every 5 s,
	// deploy/native/kafka/server.properties, and deletes even the active segment once all of it has
	// expired), then the default again for the recent order.
	adm := kadm.NewClient(testkit.Client(t))
	retention := func(op kadm.IncrementalOp, v *string) {
		t.Helper()
		resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: op, Name: "retention.ms", Value: v}}, own...)
		if err == nil {
			for _, r := range resp {
				if r.Err != nil {
					err = r.Err
				}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	retention(kadm.SetConfig, kadm.StringPtr("2000"))
	old := withID(saga(t, uuid.NewString()), uuid.NewString())
	publish(old)
	ends, err := adm.ListEndOffsets(ctx, own...)
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWhy(t, time.Minute, 500*time.Millisecond, "retention to delete the old order's events", func() string {
		starts, err := adm.ListStartOffsets(ctx, own...)
		if err != nil {
			return err.Error()
		}
		var left []string
		starts.Each(func(o kadm.ListedOffset) {
			if e, _ := ends.Lookup(o.Topic, o.Partition); o.Offset < e.Offset {
				left = append(left, fmt.Sprintf("%s starts at %d, the old events end at %d", o.Topic, o.Offset, e.Offset))
			}
		})
		return strings.Join(left, "; ")
	})
	retention(kadm.DeleteConfig, nil)
	recent := withID(saga(t, uuid.NewString()), uuid.NewString())
	publish(recent)
	want := map[string][]byte{}
	for _, evs := range [][]event.Envelope{old, recent} {
		v, err := live.Get(ctx, evs[0].OrderID)
		if err != nil {
			t.Fatal(err)
		}
		want[evs[0].OrderID], _ = json.Marshal(v)
	}

	cfg := rebuildConfig(t, base)
	var out bytes.Buffer
	if err := rebuild(ctx, cfg, own, &out, RebuildOptions{}); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	after := newCassandraKeyspace(t, base)
	if ks, _, _ := after.serving(ctx); ks != base+"_g1" {
		t.Fatalf("serving %s after the rebuild, want %s_g1", ks, base)
	}
	for id, w := range want {
		v, err := after.Get(ctx, id)
		if err != nil {
			t.Fatalf("order %s after the rebuild: %v", id, err)
		}
		if got, _ := json.Marshal(v); !bytes.Equal(got, w) {
			t.Fatalf("order %s after the rebuild:\n got %s\nwant %s", id, got, w)
		}
		if h, err := after.History(ctx, id); err != nil || len(h) != len(old) {
			t.Fatalf("order %s: %d history rows after the rebuild (%v), want %d", id, len(h), err, len(old))
		}
	}
	if !strings.Contains(out.String(), "2 orders copied, "+fmt.Sprint(len(recent))+" events replayed") {
		t.Fatalf("rebuild output %q: want both orders copied and only the recent order's events replayed", out.String())
	}

	out.Reset()
	if err := rebuild(ctx, cfg, own, &out, RebuildOptions{ReplayOnly: true}); err != nil {
		t.Fatalf("rebuild --replay-only: %v\n%s", err, out.String())
	}
	if _, err := after.Get(ctx, old[0].OrderID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old order after a replay-only rebuild: %v, want not found (its events are gone)", err)
	}
	if _, err := after.Get(ctx, recent[0].OrderID); err != nil {
		t.Fatalf("recent order after a replay-only rebuild: %v", err)
	}
}

// TestRebuildMigratesLayout1: a read model in layout 1 (made before the orders table) is rebuilt
// into a generation of the current layout while nothing is left in the topics, so the copy alone
// carries it: every view, timeline and customer listing reads the same after the switch, later
// events are written in the new layout, and the old tables are gone.
func TestRebuildMigratesLayout1(t *testing.T) {
	testkit.Integration(t)
	base := testkit.CassandraConfig(t).Keyspace
	old := newCassandraLayout1(t, base)
	ctx := testkit.Context(t, 5*time.Minute)
	rng := rand.New(rand.NewPCG(3, 4))
	proj := NewProjector(old, prometheus.NewRegistry())
	var ids []string
	rest := map[string][]event.Envelope{} // events of the partial orders not projected yet
	for i := 0; i < 60; i++ {
		id := uuid.NewString()
		ids = append(ids, id)
		evs := withID(saga(t, uuid.NewString()), id)
		if i%3 == 1 {
			evs = withID(cancelledSaga(t, uuid.NewString()), id)
		}
		if i%3 == 2 {
			rest[id] = evs[3:]
			evs = evs[:3]
		}
		for _, j := range rng.Perm(len(evs)) {
			if err := proj.Handle(ctx, evs[j:j+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	type snapshot struct {
		view, history []byte
	}
	read := func(st *Cassandra) (map[string]snapshot, []string) {
		t.Helper()
		out := map[string]snapshot{}
		for _, id := range ids {
			v, err := st.Get(ctx, id)
			if err != nil {
				t.Fatalf("order %s: %v", id, err)
			}
			h, err := st.History(ctx, id)
			if err != nil {
				t.Fatalf("history of %s: %v", id, err)
			}
			var s snapshot
			s.view, _ = json.Marshal(v)
			s.history, _ = json.Marshal(h)
			out[id] = s
		}
		var listed []string
		for cursor := []byte(nil); ; {
			vs, next, err := st.ListByCustomer(ctx, "cust-7", 25, cursor)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vs {
				listed = append(listed, v.OrderID)
			}
			if len(next) == 0 {
				break
			}
			cursor = next
		}
		return out, listed
	}
	before, listedBefore := read(old)

	own, _ := ownMainTopics(t) // empty: the events are "beyond retention"
	var out bytes.Buffer
	if err := rebuild(ctx, rebuildConfig(t, base), own, &out, RebuildOptions{}); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	after := newCassandraKeyspace(t, base)
	if ks, l, err := after.serving(ctx); err != nil || ks != base+"_g1" || l != currentLayout {
		t.Fatalf("serving %s in layout %d after the rebuild (%v), want %s_g1 in layout %d", ks, l, err, base, currentLayout)
	}
	got, listedAfter := read(after)
	for id, w := range before {
		if g := got[id]; !bytes.Equal(g.view, w.view) || !bytes.Equal(g.history, w.history) {
			t.Fatalf("order %s after the migration:\n got %s\n     %s\nwant %s\n     %s", id, g.view, g.history, w.view, w.history)
		}
	}
	if len(listedBefore) != len(ids) || strings.Join(listedAfter, ",") != strings.Join(listedBefore, ",") {
		t.Fatalf("customer listing: %d orders before, %d after (%d placed), or in another order", len(listedBefore), len(listedAfter), len(ids))
	}
	if left := baseTables(t, after, base); len(left) > 0 {
		t.Fatalf("the old generation still has %v", left)
	}
	// The partial orders go on in the new layout.
	proj = NewProjector(after, prometheus.NewRegistry())
	for id, evs := range rest {
		if err := proj.Handle(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if v, err := after.Get(ctx, id); err != nil || v.Status != StatusDeliveryAssigned {
			t.Fatalf("order %s after its last events: %+v, %v", id, v, err)
		}
		if h, err := after.History(ctx, id); err != nil || len(h) != 7 {
			t.Fatalf("order %s: %d history rows (%v), want 7", id, len(h), err)
		}
	}
}

// ownMainTopics creates topics standing in for the four main ones (which hold whatever earlier runs
// left) and returns their names, in event.MainTopics order, and a function that publishes events
// to them keyed by order, as the services do.
func ownMainTopics(t *testing.T) ([]string, func(context.Context, []event.Envelope)) {
	t.Helper()
	own := testkit.NewTopics(t, 3, event.MainTopics()...)
	topicOf := map[string]string{}
	for i, m := range event.MainTopics() {
		topicOf[m] = own[i]
	}
	return own, func(ctx context.Context, evs []event.Envelope) {
		t.Helper()
		var recs []*kgo.Record
		for _, e := range evs {
			v, _ := e.Encode()
			recs = append(recs, &kgo.Record{Topic: topicOf[e.EventType.Topic()], Key: []byte(e.OrderID), Value: v})
		}
		if err := testkit.Client(t).ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// rebuildConfig is query-api's configuration for the read model in keyspace, with a consumer group
// that has never run (no live projection for a rebuild to wait for).
func rebuildConfig(t *testing.T, keyspace string) Config {
	t.Helper()
	env := map[string]string{"CASSANDRA_KEYSPACE": keyspace, "LOG_LEVEL": "warn", "QUERY_CONSUMER_GROUP": testkit.Name("idle")}
	cfg, err := service.Load(func(k string) string { return env[k] }, Configure)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
