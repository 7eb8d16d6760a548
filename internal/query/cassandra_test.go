package query

import (
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/testkit"
)

func newCassandra(t *testing.T) *Cassandra {
	t.Helper()
	testkit.Integration(t)
	return newCassandraKeyspace(t, testkit.CassandraConfig(t).Keyspace)
}

// newCassandraKeyspace connects to keyspace (created if needed) and migrates it.
func newCassandraKeyspace(t *testing.T, keyspace string) *Cassandra {
	t.Helper()
	testkit.Integration(t)
	ctx := testkit.Context(t, 2*time.Minute)
	cfg := testkit.CassandraConfig(t)
	cfg.Keyspace = keyspace
	s, err := cass.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := Migrate(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, s); err != nil { // idempotent: a second replica starting
		t.Fatal(err)
	}
	return &Cassandra{S: s}
}

func TestCassandraStoreConverges(t *testing.T) {
	st := newCassandra(t)
	contract(t, func() Store { return st }, false, 150)
}
