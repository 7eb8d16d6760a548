package query

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
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
	shared := event.MainTopics()
	own := testkit.NewTopics(t, 3, shared...)
	topicOf := map[string]string{}
	for i, m := range shared {
		topicOf[m] = own[i]
	}
	var recs []*kgo.Record
	for _, e := range all {
		v, _ := e.Encode()
		recs = append(recs, &kgo.Record{Topic: topicOf[e.EventType.Topic()], Key: []byte(e.OrderID), Value: v})
	}
	if err := testkit.Client(t).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	proj := NewProjector(live, prometheus.NewRegistry())
	for _, i := range rng.Perm(len(all)) {
		if err := proj.Handle(ctx, []event.Envelope{all[i]}); err != nil {
			t.Fatal(err)
		}
	}

	target := testkit.CassandraConfig(t)
	env := map[string]string{"CASSANDRA_KEYSPACE": target.Keyspace, "LOG_LEVEL": "warn"}
	cfg, err := service.Load(func(k string) string { return env[k] }, Configure)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rebuild(ctx, cfg, own, &out); err != nil {
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
	if want := fmt.Sprintf("from %d events", len(all)); !bytes.Contains(out.Bytes(), []byte(want)) {
		t.Fatalf("rebuild output %q, want %q: it replayed other records too", out.String(), want)
	}
	t.Logf("%d orders identical after rebuild: %s", orders, bytes.TrimSpace(out.Bytes()))
}
