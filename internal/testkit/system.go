package testkit

import (
	"net"
	"slices"
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
	Addrs map[string]string    // prefix → 127.0.0.1:port (or the address given to StartSystemIn)
	DBs   map[string]pg.Config // prefix → database
	Env   map[string]string    // the services' environment (what verify must read)
	Procs map[string]*Process  // prefix → process (one shared process with oneProcess)
	// Groups maps a consumer service's prefix to its consumer group, Topics to what it consumes.
	Groups map[string]string
	Topics map[string][]string
	// Servers are the Kafka and Cassandra the services use.
	Servers Servers
}

// StartSystem starts the services (one process running `all`, or one process each) with env
// added after the isolation settings (so env wins), and waits until all are ready.
func StartSystem(t testing.TB, oneProcess bool, env ...string) *System {
	t.Helper()
	return startSystem(t, Local(), nil, "127.0.0.1", oneProcess, env...)
}

// StartSystemOn is StartSystem with one process per service on servers (e.g. Cluster(t)).
func StartSystemOn(t testing.TB, servers Servers, env ...string) *System {
	t.Helper()
	return startSystem(t, servers, nil, "127.0.0.1", false, env...)
}

// StartSystemIn starts the services in one process inside ns, each listening on ip (an address
// of ns, e.g. from Veth); their servers must be forwarded into ns (ForwardInto).
func StartSystemIn(t testing.TB, ns *Netns, ip string, env ...string) *System {
	t.Helper()
	return startSystem(t, Local(), ns, ip, true, env...)
}

// ConsumedTopics maps a consumer service's prefix to the topics it consumes.
func ConsumedTopics() map[string][]string {
	return map[string][]string{
		"ORDER":     {event.TopicInventory, event.TopicPayments, event.TopicDelivery},
		"INVENTORY": {event.TopicOrders, event.TopicPayments, event.TopicDelivery}, "PAYMENT": {event.TopicInventory},
		"DELIVERY": {event.TopicPayments, event.TopicOrders}, "QUERY": event.MainTopics(),
	}
}

// Isolation keeps a test's services off the shared state the defaults name (the databases, consumer
// groups and keyspace that `orderflow all`, dev runs and benchmarks use): fresh databases, fresh
// groups starting at the topics' ends, a fresh keyspace.
type Isolation struct {
	DBs    map[string]pg.Config // by service prefix (not QUERY)
	Groups map[string]string    // by service prefix
	Env    []string             // the variables that select them
}

// Isolate creates an Isolation for every service on the local servers.
func Isolate(t testing.TB) Isolation {
	t.Helper()
	return Local().Isolate(t)
}

// Isolate creates an Isolation for every service on srv; its Env includes srv.Env.
func (srv Servers) Isolate(t testing.TB) Isolation {
	t.Helper()
	iso := Isolation{DBs: map[string]pg.Config{}, Groups: map[string]string{},
		Env: append(append([]string{}, srv.Env...), "CASSANDRA_KEYSPACE="+srv.CassandraConfig(t).Keyspace)}
	topics := ConsumedTopics()
	for _, s := range Services {
		if s.Prefix != "QUERY" {
			db := NewDatabase(t)
			iso.DBs[s.Prefix] = db
			iso.Env = append(iso.Env, s.Prefix+"_DB_NAME="+db.Database)
		}
		if ts, ok := topics[s.Prefix]; ok {
			g := Name(strings.ToLower(s.Prefix))
			srv.GroupAtEnd(t, g, ts...)
			iso.Groups[s.Prefix] = g
			iso.Env = append(iso.Env, s.Prefix+"_CONSUMER_GROUP="+g)
		}
	}
	return iso
}

func startSystem(t testing.TB, servers Servers, ns *Netns, ip string, oneProcess bool, env ...string) *System {
	t.Helper()
	iso := servers.Isolate(t)
	sys := &System{Addrs: map[string]string{}, DBs: iso.DBs, Env: map[string]string{}, Procs: map[string]*Process{},
		Groups: iso.Groups, Topics: ConsumedTopics(), Servers: servers}
	all := iso.Env
	var prefix []string
	for _, s := range Services {
		var addr string
		if ns == nil {
			addr = FreeAddr(t)
		} else {
			prefix, addr = ns.Prefix(), ns.FreeAddr(t, ip) // free inside ns, where the services listen
		}
		_, port, _ := net.SplitHostPort(addr)
		sys.Addrs[s.Prefix] = net.JoinHostPort(ip, port)
		all = append(all, s.Prefix+"_HTTP_ADDR="+sys.Addrs[s.Prefix])
	}
	all = append(all, env...)
	for _, kv := range all {
		k, v, _ := strings.Cut(kv, "=")
		sys.Env[k] = v
	}
	if oneProcess {
		p := StartWith(t, prefix, "all", sys.Addrs["ORDER"], all...)
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

// AddInstance starts one more instance of the service with the given prefix (same databases, same
// consumer group, its own HTTP port) and waits until it is ready; it stops at the end of the test.
func (sys *System) AddInstance(t testing.TB, prefix string) *Process {
	t.Helper()
	var cmd string
	for _, s := range Services {
		if s.Prefix == prefix {
			cmd = s.Cmd
		}
	}
	if cmd == "" {
		t.Fatalf("no service with prefix %q", prefix)
	}
	addr := FreeAddr(t)
	env := make([]string, 0, len(sys.Env)+1)
	for k, v := range sys.Env {
		env = append(env, k+"="+v)
	}
	return Start(t, cmd, addr, append(env, prefix+"_HTTP_ADDR="+addr)...)
}

// GroupsFor returns the consumer groups of the system that consume topic.
func (sys *System) GroupsFor(topic string) []string {
	var out []string
	for prefix, topics := range sys.Topics {
		if slices.Contains(topics, topic) {
			out = append(out, sys.Groups[prefix])
		}
	}
	slices.Sort(out)
	return out
}
