package query

import (
	"fmt"
	"sort"
	"strings"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// layout is a generation's table layout. A rebuild builds the next generation in currentLayout and
// a generation keeps the layout it was built in, so a release that changes the layout still reads
// and writes the older one until `orderflow query rebuild` has replaced it.
type layout int

const (
	// layoutViewTables keeps the view in order_view and the timeline in order_events: two tables
	// written per event. Read models made before layoutOrders have it until they are rebuilt.
	layoutViewTables layout = 1
	// layoutOrders keeps an order in one partition of orders: the view in static columns, the
	// timeline in its rows. An event writes one partition of one table.
	layoutOrders layout = 2

	currentLayout = layoutOrders
)

// viewTable holds the view's cells.
func (l layout) viewTable() string {
	if l == layoutViewTables {
		return "order_view"
	}
	return "orders"
}

// timelineTable holds the timeline's rows.
func (l layout) timelineTable() string {
	if l == layoutViewTables {
		return "order_events"
	}
	return "orders"
}

// migrations is the directory of the layout's CQL files.
func (l layout) migrations() string { return fmt.Sprintf("cql/v%d", l) }

// dataTables are the tables of every layout (schema_migrations records a keyspace's migrations).
var dataTables = []string{"order_view", "order_events", "orders", "orders_by_customer", "schema_migrations"}

// timelineColumns are a timeline row's columns, its primary key first.
var timelineColumns = []string{"order_id", "occurred_at", "event_id", "event_type", "producer", "summary", "payload"}

// addMutation appends m's statements for keyspace ks to b. Field names are our constants, never
// input; values and timestamps are bound, so a statement's text depends only on the keyspace, the
// layout and the set of fields, and is prepared once.
func (l layout) addMutation(b *gocql.Batch, ks string, m Mutation) {
	h := m.History
	writes := m.Writes
	if l == layoutOrders {
		// The timeline row and the view cells written at the event's own timestamp: one INSERT.
		at := micros(h.OccurredAt)
		var own map[string]any
		for i, w := range writes {
			if w.Timestamp == at {
				own = w.Values
				writes = append(writes[:i:i], writes[i+1:]...)
				break
			}
		}
		fields := sortedFields(own)
		cols := append(append([]string(nil), timelineColumns...), fields...)
		args := make([]any, 0, len(cols)+1)
		args = append(args, h.OrderID, h.OccurredAt, h.EventID, h.EventType, h.Producer, h.Summary, h.Payload)
		for _, f := range fields {
			args = append(args, toCQL(own[f]))
		}
		args = append(args, at)
		b.Query("INSERT INTO "+ks+".orders ("+strings.Join(cols, ", ")+") VALUES (?"+strings.Repeat(", ?", len(cols)-1)+") USING TIMESTAMP ?", args...)
	}
	for _, w := range writes {
		fields := sortedFields(w.Values)
		sets := make([]string, len(fields))
		args := make([]any, 0, len(fields)+2)
		args = append(args, w.Timestamp)
		for i, f := range fields {
			sets[i] = f + " = ?"
			args = append(args, toCQL(w.Values[f]))
		}
		args = append(args, m.OrderID)
		b.Query("UPDATE "+ks+"."+l.viewTable()+" USING TIMESTAMP ? SET "+strings.Join(sets, ", ")+" WHERE order_id = ?", args...)
	}
	if l == layoutViewTables {
		b.Query(`INSERT INTO `+ks+`.order_events (`+strings.Join(timelineColumns, ", ")+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			h.OrderID, h.OccurredAt, h.EventID, h.EventType, h.Producer, h.Summary, h.Payload)
	}
	if cu := m.Customer; cu != nil {
		b.Query(`INSERT INTO `+ks+`.orders_by_customer (customer_id, created_at, order_id) VALUES (?, ?, ?)`,
			cu.CustomerID, cu.CreatedAt, cu.OrderID)
	}
}

func sortedFields(values map[string]any) []string {
	fields := make([]string, 0, len(values))
	for f := range values {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	return fields
}

// selectViews reads whole views of ks, a row per order (scanView's columns).
func (l layout) selectViews(ks string) string {
	q := "SELECT order_id, " + strings.Join(viewColumns, ", ") + " FROM " + ks + "." + l.viewTable()
	if l == layoutOrders {
		q += " PER PARTITION LIMIT 1" // the static cells come with every row: one is enough
	}
	return q
}

// selectView reads one order's view (bind its id).
func (l layout) selectView(ks string) string {
	q := "SELECT order_id, " + strings.Join(viewColumns, ", ") + " FROM " + ks + "." + l.viewTable() + " WHERE order_id = ?"
	if l == layoutOrders {
		q += " LIMIT 1"
	}
	return q
}
