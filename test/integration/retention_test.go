package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/testkit"
)

// TestInboxRetentionIsCheckedAgainstTheTopics: a service whose DEDUP_RETENTION is shorter than a
// consumed topic's retention (the topics keep 7 days) says so at start-up; with the default (8 days)
// it records that the inbox outlives the topics' records.
func TestInboxRetentionIsCheckedAgainstTheTopics(t *testing.T) {
	testkit.Integration(t)
	for _, c := range []struct {
		retention string
		want      string
	}{
		{"DEDUP_RETENTION=1h", "DEDUP_RETENTION is shorter than a consumed topic's retention"},
		{"LOG_LEVEL=debug", "the inbox outlives the topic's records"},
	} {
		t.Run(c.retention, func(t *testing.T) {
			db := testkit.NewDatabase(t)
			addr := testkit.FreeAddr(t)
			group := testkit.Name("retention")
			topics := testkit.ConsumedTopics()["INVENTORY"]
			testkit.GroupAtEnd(t, group, topics...)
			p := testkit.Start(t, "inventory-service", addr, "INVENTORY_HTTP_ADDR="+addr, "INVENTORY_DB_NAME="+db.Database,
				"INVENTORY_CONSUMER_GROUP="+group, c.retention)
			// One line per consumed topic, then the check is over.
			testkit.Eventually(t, 30*time.Second, "the retention check's line for every consumed topic", func() bool {
				return strings.Count(p.Output(), c.want) == len(topics)
			})
			for _, topic := range topics {
				if out := p.Output(); !strings.Contains(out, topic) {
					t.Fatalf("the check does not name the consumed topic %s:\n%s", topic, out)
				}
			}
			if c.retention == "LOG_LEVEL=debug" && strings.Contains(p.Output(), "DEDUP_RETENTION is shorter") {
				t.Fatal("the default retention was reported shorter than the topics'")
			}
		})
	}
}
