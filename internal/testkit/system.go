package testkit

import (
	"strings"
	"testing"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

// Services lists each service's subcommand and environment prefix.
var Services = []struct{ Cmd, Prefix string }{
	{"order-service", "ORDER"}, {"inventory-service", "INVENTORY"}, {"payment-service", "PAYMENT"},
	{"delivery-service", "DELIVERY"}, {"query-api", "QUERY"},
}

// System is one running copy of the five services, isolated from anything else on the shared
// servers by fresh databases, a fresh keyspace and fresh consumer groups positioned at the topics'
// current ends.
type System struct {
	Addrs map[string]string    // prefix → 127.0.0.1:port
	DBs   map[string]pg.Config // prefix → database
	Env   map[string]string    // the services' environment (what verify must read)
	Procs map[string]*Process  // prefix → process (one shared process with oneProcess)
}

// StartSystem starts the services (one process running `all`, or one process each) with env
// added after the isolation settings (so env wins), and waits until all are ready.
func StartSystem(t testing.TB, oneProcess bool, env ...string) *System {
	t.Helper()
	sys := &System{Addrs: map[string]string{}, DBs: map[string]pg.Config{}, Env: map[string]string{}, Procs: map[string]*Process{}}
	all := []string{"CASSANDRA_KEYSPACE=" + CassandraConfig(t).Keyspace}
	groups := map[string][]string{
		"INVENTORY": {event.TopicOrders, event.TopicPayments}, "PAYMENT": {event.TopicInventory},
		"DELIVERY": {event.TopicPayments}, "QUERY": event.MainTopics(),
	}
	for _, s := range Services {
		sys.Addrs[s.Prefix] = FreeAddr(t)
		all = append(all, s.Prefix+"_HTTP_ADDR="+sys.Addrs[s.Prefix])
		if s.Prefix != "QUERY" {
			db := NewDatabase(t)
			sys.DBs[s.Prefix] = db
			all = append(all, s.Prefix+"_DB_NAME="+db.Database)
		}
		if topics, ok := groups[s.Prefix]; ok {
			g := Name(strings.ToLower(s.Prefix))
			GroupAtEnd(t, g, topics...)
			all = append(all, s.Prefix+"_CONSUMER_GROUP="+g)
		}
	}
	all = append(all, env...)
	for _, kv := range all {
		k, v, _ := strings.Cut(kv, "=")
		sys.Env[k] = v
	}
	if oneProcess {
		p := Start(t, "all", sys.Addrs["ORDER"], all...)
		for _, s := range Services {
			WaitReady(t, p, sys.Addrs[s.Prefix])
			sys.Procs[s.Prefix] = p
		}
		return sys
	}
	for _, s := range Services {
		sys.Procs[s.Prefix] = Start(t, s.Cmd, sys.Addrs[s.Prefix], all...)
	}
	return sys
}
