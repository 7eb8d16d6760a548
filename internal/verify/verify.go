// Package verify checks the system's invariants by reading every store directly: the four Postgres
// databases, the Cassandra read model and the dead-letter topics. It is the referee of load and
// fault runs: a FAIL is a bug in a service, never a reason to relax a check.
package verify

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/delivery"
	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/payment"
	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/service"
	"github.com/orderflow/orderflow/internal/query"
)

// Config says where the stores are (the services' own variables) and what to expect.
type Config struct {
	service.Common
	Postgres       pg.Config
	Cassandra      cass.Config
	DBs            map[string]string // order, inventory, payment, delivery → database name
	Groups         []string          // consumer groups that must have caught up
	DriverCapacity int
	AllowDLQ       int64         // dead-letter records the run injected on purpose
	Quiesce        time.Duration // how long to wait for outboxes and consumers to drain
	MaxReport      int           // offending ids shown per check
}

// LoadConfig reads the environment like the services do, then the flags.
func LoadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	e := config.New(getenv)
	c := Config{Common: service.LoadCommon(e), Postgres: service.LoadPostgres(e), Cassandra: service.LoadCassandra(e), DBs: map[string]string{
		"order":     e.String("ORDER_DB_NAME", "order_db", ""),
		"inventory": e.String("INVENTORY_DB_NAME", "inventory_db", ""),
		"payment":   e.String("PAYMENT_DB_NAME", "delivery_eta", ""),
		"delivery":  e.String("DELIVERY_DB_NAME", "delivery_db", ""),
	}}
	c.Groups = []string{
		e.String("ORDER_CONSUMER_GROUP", event.GroupOrder, ""),
		e.String("INVENTORY_CONSUMER_GROUP", event.GroupInventory, ""), e.String("PAYMENT_CONSUMER_GROUP", event.GroupPayment, ""),
		e.String("DELIVERY_CONSUMER_GROUP", event.GroupDelivery, ""), e.String("QUERY_CONSUMER_GROUP", event.GroupQuery, ""),
	}
	c.DriverCapacity = e.Int("DELIVERY_DRIVER_CAPACITY", 5, "")
	if err := e.Err(); err != nil {
		return c, err
	}
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	allow := fs.Int64("allow-dlq", 0, "dead-letter records injected on purpose (total over all DLQ topics)")
	fs.DurationVar(&c.Quiesce, "quiesce-timeout", 2*time.Minute, "how long to wait for outboxes and consumer groups to drain")
	fs.IntVar(&c.MaxReport, "show", 5, "offending ids shown per failed check")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.AllowDLQ = *allow
	return c, nil
}

// Check is one invariant's outcome.
type Check struct {
	Name    string
	Pass    bool
	Detail  string
	Offense []string
}

// Report is the outcome of a verification.
type Report struct {
	Checks []Check
}

// OK reports whether every check passed.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if !c.Pass {
			return false
		}
	}
	return true
}

func (r *Report) add(name string, offenses []string, max int, detail string, args ...any) {
	c := Check{Name: name, Pass: len(offenses) == 0, Detail: fmt.Sprintf(detail, args...)}
	sort.Strings(offenses)
	if len(offenses) > max {
		c.Offense = append(offenses[:max:max], fmt.Sprintf("… and %d more", len(offenses)-max))
	} else {
		c.Offense = offenses
	}
	r.Checks = append(r.Checks, c)
}

// Print writes PASS/FAIL lines.
func (r Report) Print(w io.Writer) {
	for _, c := range r.Checks {
		mark := "PASS"
		if !c.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s  %-28s %s\n", mark, c.Name, c.Detail)
		for _, o := range c.Offense {
			fmt.Fprintf(w, "        %s\n", o)
		}
	}
	if r.OK() {
		fmt.Fprintln(w, "verify: all invariants hold")
	} else {
		fmt.Fprintln(w, "verify: invariants violated")
	}
}

// Run verifies and prints; it returns an error when a check failed.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	rep, err := Verify(ctx, cfg, stdout)
	if err != nil {
		return err
	}
	rep.Print(stdout)
	if !rep.OK() {
		return errors.New("verification failed")
	}
	return nil
}

type stores struct {
	dbs  map[string]*pgx.Conn
	view *query.Cassandra
	kcl  *kgo.Client
}

// Verify waits for quiescence, then runs every check.
func Verify(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	var rep Report
	st := stores{dbs: map[string]*pgx.Conn{}}
	for name, db := range cfg.DBs {
		c := cfg.Postgres
		c.Database = db
		conn, err := pgx.Connect(ctx, c.URL(db))
		if err != nil {
			return rep, fmt.Errorf("connect %s database %s: %w", name, db, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		st.dbs[name] = conn
	}
	sess, err := cass.Connect(ctx, cfg.Cassandra)
	if err != nil {
		return rep, err
	}
	defer sess.Close()
	st.view = query.NewCassandra(sess, cfg.Cassandra.Keyspace)
	kcl, err := kgo.NewClient(cfg.Kafka.Options()...)
	if err != nil {
		return rep, err
	}
	defer kcl.Close()
	st.kcl = kcl

	inflight := quiesce(ctx, cfg, st, progress)
	rep.add("quiescence", inflight, cfg.MaxReport, "outboxes empty and consumer groups caught up (waited up to %s)", cfg.Quiesce)

	d, err := load(ctx, st, nil)
	if err != nil {
		return rep, err
	}
	checkPayments(&rep, cfg, d)
	checkStock(&rep, cfg, d)
	checkOrders(&rep, cfg, d)
	checkView(&rep, cfg, d, st)
	checkDelivery(&rep, cfg, d)
	checkCancellations(&rep, cfg, d)
	if err := checkDLQ(ctx, &rep, cfg); err != nil {
		return rep, err
	}
	return rep, nil
}

// quiesce waits until every outbox is empty and every group has no lag, twice in a row.
func quiesce(ctx context.Context, cfg Config, st stores, progress io.Writer) []string {
	deadline := time.Now().Add(cfg.Quiesce)
	adm := kadm.NewClient(st.kcl)
	stable := 0
	var pending []string
	for {
		pending = pending[:0]
		for name, conn := range st.dbs {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
				pending = append(pending, fmt.Sprintf("%s outbox unreadable: %v", name, err))
			} else if n > 0 {
				pending = append(pending, fmt.Sprintf("%s outbox: %d unpublished", name, n))
			}
		}
		lags, err := adm.Lag(ctx, cfg.Groups...)
		if err != nil {
			pending = append(pending, "consumer lag unreadable: "+err.Error())
		} else {
			for _, g := range cfg.Groups {
				l, ok := lags[g]
				if !ok {
					continue
				}
				if errors.Is(l.DescribeErr, kerr.GroupIDNotFound) {
					continue // the service never consumed; the order checks report what is missing
				}
				if l.FetchErr != nil || l.DescribeErr != nil {
					pending = append(pending, fmt.Sprintf("group %s: %v %v", g, l.FetchErr, l.DescribeErr))
					continue
				}
				var total int64
				for _, ps := range l.Lag {
					for _, pl := range ps {
						if slices.Contains(event.MainTopics(), pl.Topic) && pl.Lag > 0 {
							total += pl.Lag
						}
					}
				}
				if total > 0 {
					pending = append(pending, fmt.Sprintf("group %s: %d records behind", g, total))
				}
			}
		}
		if len(pending) == 0 {
			stable++
			if stable >= 2 {
				return nil
			}
		} else {
			stable = 0
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return pending
		}
		if progress != nil && len(pending) > 0 {
			fmt.Fprintf(progress, "waiting for quiescence: %s\n", strings.Join(pending, "; "))
		}
		time.Sleep(time.Second)
	}
}

// data is everything the checks compare, keyed by order id.
type data struct {
	orders       map[string]orderRow
	createdEvent map[string]bool
	reservations map[string]reservation
	payments     map[string][]paymentRow
	deliveries   map[string]deliveryRow
	// cancellations are delivery-service's decisions (refusal "" = accepted); cancelAsked the
	// orders whose cancellation order-service asked for; waiting the orders in the driver queue.
	cancellations map[string]string
	cancelAsked   map[string]bool
	waiting       map[string]bool
	drivers       []driverRow
	stock         []stockRow
	held          map[string]int // item → units held by RESERVED reservations
	views         map[string]query.View
}

type orderRow struct{ total, status string }
type reservation struct{ id, status, reason string }
type paymentRow struct {
	id     int64
	status string
	reason string
}
type deliveryRow struct {
	id, driver, status string
	eta                time.Time
}
type driverRow struct {
	id, active, assigned int
}
type stockRow struct {
	item                        string
	available, reserved, onHand int
}

func andIfFiltered(ids []string) string {
	if ids == nil {
		return " WHERE"
	}
	return " AND"
}

// load reads every store; with ids it reads only those orders (and skips stock and drivers).
func load(ctx context.Context, st stores, ids []string) (*data, error) {
	d := &data{orders: map[string]orderRow{}, createdEvent: map[string]bool{}, reservations: map[string]reservation{},
		payments: map[string][]paymentRow{}, deliveries: map[string]deliveryRow{}, held: map[string]int{}, views: map[string]query.View{},
		cancellations: map[string]string{}, cancelAsked: map[string]bool{}, waiting: map[string]bool{}}
	filter := func(col string) string {
		if ids == nil {
			return ""
		}
		return " WHERE " + col + " = ANY($1)"
	}
	q := func(db, sql string, scan func(pgx.Rows) error) error {
		var args []any
		if ids != nil {
			if strings.Contains(sql, "/*all*/") {
				return nil // not needed for a re-check
			}
			args = append(args, ids)
		}
		rows, err := st.dbs[db].Query(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", db, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	err := errors.Join(
		q("order", `SELECT order_id::text, total_amount::text, status, cancel_requested_at IS NOT NULL FROM orders`+filter("order_id::text"), func(r pgx.Rows) error {
			var o orderRow
			var id string
			var asked bool
			err := r.Scan(&id, &o.total, &o.status, &asked)
			d.orders[id] = o
			if asked {
				d.cancelAsked[id] = true
			}
			return err
		}),
		q("delivery", `SELECT order_id, coalesce(refusal, '') FROM cancellations`+filter("order_id"), func(r pgx.Rows) error {
			var id, refusal string
			err := r.Scan(&id, &refusal)
			d.cancellations[id] = refusal
			return err
		}),
		q("delivery", `SELECT order_id FROM waiting_orders`+filter("order_id"), func(r pgx.Rows) error {
			var id string
			err := r.Scan(&id)
			d.waiting[id] = true
			return err
		}),
		q("order", `SELECT record_key FROM (SELECT record_key, event_type FROM outbox) o`+filter("record_key")+andIfFiltered(ids)+` event_type = 'order.created'`, func(r pgx.Rows) error {
			var id string
			err := r.Scan(&id)
			d.createdEvent[id] = true
			return err
		}),
		q("inventory", `SELECT order_id, reservation_id::text, status, coalesce(reason, '') FROM reservations`+filter("order_id"), func(r pgx.Rows) error {
			var id string
			var res reservation
			err := r.Scan(&id, &res.id, &res.status, &res.reason)
			d.reservations[id] = res
			return err
		}),
		q("inventory", `SELECT s.item_id, s.available, s.reserved, s.on_hand FROM stock s /*all*/`, func(r pgx.Rows) error {
			var s stockRow
			err := r.Scan(&s.item, &s.available, &s.reserved, &s.onHand)
			d.stock = append(d.stock, s)
			return err
		}),
		q("inventory", `SELECT ri.item_id, sum(ri.quantity) FROM reservation_items ri JOIN reservations r USING (reservation_id)
			WHERE r.status = 'RESERVED' /*all*/ GROUP BY ri.item_id`, func(r pgx.Rows) error {
			var item string
			var n int
			err := r.Scan(&item, &n)
			d.held[item] = n
			return err
		}),
		q("payment", `SELECT order_id, payment_id, status, coalesce(failure_reason, '') FROM payments`+filter("order_id"), func(r pgx.Rows) error {
			var id string
			var p paymentRow
			err := r.Scan(&id, &p.id, &p.status, &p.reason)
			d.payments[id] = append(d.payments[id], p)
			return err
		}),
		q("delivery", `SELECT d.order_id, d.delivery_id, dr.name, d.status, d.eta FROM deliveries d JOIN drivers dr USING (driver_id)`+filter("d.order_id"), func(r pgx.Rows) error {
			var id string
			var x deliveryRow
			err := r.Scan(&id, &x.id, &x.driver, &x.status, &x.eta)
			d.deliveries[id] = x
			return err
		}),
		q("delivery", `SELECT dr.driver_id, dr.active_deliveries, (SELECT count(*) FROM deliveries d WHERE d.driver_id = dr.driver_id AND d.status = 'ASSIGNED')
			FROM drivers dr /*all*/`, func(r pgx.Rows) error {
			var x driverRow
			err := r.Scan(&x.id, &x.active, &x.assigned)
			d.drivers = append(d.drivers, x)
			return err
		}),
	)
	if err != nil {
		return nil, err
	}
	store := st.view
	if ids != nil {
		for _, id := range ids {
			v, err := store.Get(ctx, id)
			if err == nil {
				d.views[id] = v
			} else if !errors.Is(err, query.ErrNotFound) {
				return nil, err
			}
		}
		return d, nil
	}
	var cursor []byte
	for {
		views, next, err := store.List(ctx, 1000, cursor)
		if err != nil {
			return nil, err
		}
		for _, v := range views {
			d.views[v.OrderID] = v
		}
		if len(next) == 0 || len(views) == 0 {
			break
		}
		cursor = next
	}
	return d, nil
}

func checkPayments(rep *Report, cfg Config, d *data) {
	var multi, afterReject []string
	n := 0
	for id, ps := range d.payments {
		n += len(ps)
		if len(ps) > 1 {
			multi = append(multi, fmt.Sprintf("%s: %d payments", id, len(ps)))
		}
		for _, p := range ps {
			if p.status == event.PaymentStatusAuthorized && d.reservations[id].status == "REJECTED" {
				afterReject = append(afterReject, id+": authorized although inventory rejected it")
			}
		}
	}
	rep.add("one payment per order", multi, cfg.MaxReport, "%d payments for %d orders", n, len(d.payments))
	rep.add("no charge after rejection", afterReject, cfg.MaxReport, "%d rejected reservations", countStatus(d.reservations, "REJECTED"))
}

func countStatus(m map[string]reservation, s string) int {
	n := 0
	for _, r := range m {
		if r.status == s {
			n++
		}
	}
	return n
}

func checkStock(rep *Report, cfg Config, d *data) {
	var bad []string
	for _, s := range d.stock {
		switch {
		case s.available < 0:
			bad = append(bad, fmt.Sprintf("%s: available %d is negative", s.item, s.available))
		case s.available+s.reserved != s.onHand:
			bad = append(bad, fmt.Sprintf("%s: available %d + reserved %d != on hand %d", s.item, s.available, s.reserved, s.onHand))
		case s.reserved != d.held[s.item]:
			bad = append(bad, fmt.Sprintf("%s: reserved column %d != units held by live reservations %d", s.item, s.reserved, d.held[s.item]))
		}
	}
	// A failed payment's reservation must have been released.
	for id, ps := range d.payments {
		for _, p := range ps {
			if p.status == event.PaymentStatusFailed && d.reservations[id].status == "RESERVED" {
				bad = append(bad, id+": payment failed but its reservation still holds stock")
			}
		}
	}
	rep.add("stock conservation", bad, cfg.MaxReport, "%d items; available + held = on hand, never negative, released reservations hold nothing", len(d.stock))
}

func expectedStatus(d *data, id string) string {
	res, hasRes := d.reservations[id]
	var pay *paymentRow
	if ps := d.payments[id]; len(ps) > 0 {
		pay = &ps[0]
	}
	del, hasDel := d.deliveries[id]
	if refusal, ok := d.cancellations[id]; ok && refusal == "" {
		return query.StatusCancelled
	}
	switch {
	case hasRes && res.status == "REJECTED":
		return query.StatusInventoryRejected
	case pay != nil && pay.status == event.PaymentStatusFailed:
		return query.StatusPaymentFailed
	case hasDel && del.status == "DELIVERED":
		return query.StatusDelivered
	case hasDel:
		return query.StatusDeliveryAssigned
	case pay != nil:
		return query.StatusPaymentAuthorized
	case hasRes:
		return query.StatusInventoryReserved
	}
	return query.StatusCreated
}

func checkOrders(rep *Report, cfg Config, d *data) {
	var noEvent, noView, notTerminal []string
	for id := range d.orders {
		if !d.createdEvent[id] {
			noEvent = append(noEvent, id)
		}
		v, ok := d.views[id]
		if !ok {
			noView = append(noView, id)
			continue
		}
		if !query.Terminal(v.Status) {
			notTerminal = append(notTerminal, id+": "+v.Status)
		}
	}
	rep.add("every order has order.created", noEvent, cfg.MaxReport, "%d orders", len(d.orders))
	rep.add("every order has a view row", noView, cfg.MaxReport, "%d view rows", len(d.views))
	rep.add("every order terminal", notTerminal, cfg.MaxReport, "statuses DELIVERY_ASSIGNED, DELIVERED, INVENTORY_REJECTED, PAYMENT_FAILED, CANCELLED")
}

// checkView compares each view row with its sources. On a live system a delivery can complete
// between reading the sources and reading the view, so offenders are re-read a few times (sources,
// then view); only a difference that persists is reported.
func checkView(rep *Report, cfg Config, d *data, st stores) {
	bad := viewOffenders(d, nil)
	for round := 0; round < 5 && len(bad) > 0; round++ {
		time.Sleep(time.Second)
		ids := make([]string, 0, len(bad))
		for id := range bad {
			ids = append(ids, id)
		}
		again, err := load(context.Background(), st, ids)
		if err != nil {
			break
		}
		bad = viewOffenders(again, ids)
	}
	var lines []string
	for _, msg := range bad {
		lines = append(lines, msg)
	}
	rep.add("view equals sources of truth", lines, cfg.MaxReport, "status (also order-service's), total, payment, delivery, driver and latest ETA of %d orders", len(d.orders))
}

// viewOffenders returns, per order id, why its view differs from its sources.
func viewOffenders(d *data, only []string) map[string]string {
	bad := map[string]string{}
	for id, o := range d.orders {
		if only != nil && !slices.Contains(only, id) {
			continue
		}
		v, ok := d.views[id]
		if !ok {
			continue // reported above
		}
		if want := expectedStatus(d, id); v.Status != want {
			bad[id] = fmt.Sprintf("%s: view %s, sources say %s", id, v.Status, want)
			continue
		}
		if o.status != v.Status {
			bad[id] = fmt.Sprintf("%s: view %s, order-service says %s", id, v.Status, o.status)
			continue
		}
		if v.TotalAmount == nil || v.TotalAmount.String() != o.total {
			bad[id] = fmt.Sprintf("%s: view total %v, order %s", id, v.TotalAmount, o.total)
			continue
		}
		if ps := d.payments[id]; len(ps) > 0 && ps[0].status != payment.StatusCancelled && (v.PaymentID == nil || *v.PaymentID != ps[0].id) {
			bad[id] = fmt.Sprintf("%s: view payment %v, payments table %d", id, v.PaymentID, ps[0].id)
			continue
		}
		if del, ok := d.deliveries[id]; ok {
			if v.DeliveryID != del.id || v.DriverName != del.driver || v.EstimatedDeliveryTime == nil ||
				!v.EstimatedDeliveryTime.Equal(del.eta.UTC().Truncate(time.Millisecond)) {
				bad[id] = fmt.Sprintf("%s: view delivery %s/%s/%v, deliveries table %s/%s/%s", id, v.DeliveryID, v.DriverName,
					v.EstimatedDeliveryTime, del.id, del.driver, del.eta.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	return bad
}

func checkDelivery(rep *Report, cfg Config, d *data) {
	var bad []string
	for _, dr := range d.drivers {
		switch {
		case dr.active > cfg.DriverCapacity:
			bad = append(bad, fmt.Sprintf("driver %d: %d active deliveries, capacity %d", dr.id, dr.active, cfg.DriverCapacity))
		case dr.active != dr.assigned:
			bad = append(bad, fmt.Sprintf("driver %d: counter %d, assigned deliveries %d", dr.id, dr.active, dr.assigned))
		}
	}
	for id, del := range d.deliveries {
		want := event.PaymentStatusAuthorized
		if del.status == delivery.StatusCancelled {
			want = payment.StatusRefunded
		}
		if ps := d.payments[id]; len(ps) == 0 || ps[0].status != want {
			bad = append(bad, fmt.Sprintf("%s: delivery %s without a payment %s", id, del.status, want))
		}
	}
	rep.add("drivers within capacity", bad, cfg.MaxReport, "%d drivers, %d deliveries (one per order by constraint)", len(d.drivers), len(d.deliveries))
}

// checkDLQ counts the dead letters written by this deployment's consumer groups (records without
// the group header count too): other deployments sharing the cluster have their own groups, and
// their dead letters are not this system's failures. Those are reported but not judged.
func checkDLQ(ctx context.Context, rep *Report, cfg Config) error {
	var total, foreign int64
	var bad []string
	for _, t := range event.DLQTopics() {
		err := kafka.ScanDLQ(ctx, cfg.Kafka, t, func(r kafka.DLQRecord) bool {
			if g := r.Headers[kafka.HeaderConsumerGroup]; g != "" && !slices.Contains(cfg.Groups, g) {
				foreign++
				return true
			}
			total++
			if len(bad) < cfg.MaxReport {
				bad = append(bad, fmt.Sprintf("%s %d:%d key %s group %s: %s", t, r.Partition, r.Offset, r.Key, r.Headers[kafka.HeaderConsumerGroup], r.Error()))
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	if total == cfg.AllowDLQ {
		bad = nil
	} else {
		bad = append(bad, fmt.Sprintf("%d records in all, expected %d", total, cfg.AllowDLQ))
	}
	rep.add("dead-letter topics", bad, cfg.MaxReport+1, "%d records of this system's groups (expected %d; %d of other groups ignored)", total, cfg.AllowDLQ, foreign)
	return nil
}

// checkCancellations checks what a cancellation must leave behind: an accepted one holds no stock,
// no net charge, no driver and no place in the queue; a refused one only ever concerns a delivered
// order; a refund only follows an accepted cancellation, and a delivered order is never refunded;
// every cancellation order-service asked for was decided by delivery-service.
func checkCancellations(rep *Report, cfg Config, d *data) {
	var bad []string
	accepted := 0
	for id, refusal := range d.cancellations {
		del, hasDel := d.deliveries[id]
		if refusal != "" {
			if !hasDel || del.status != delivery.StatusDelivered {
				bad = append(bad, fmt.Sprintf("%s: cancellation refused (%s) but the delivery is %q", id, refusal, del.status))
			}
			continue
		}
		accepted++
		if r, ok := d.reservations[id]; ok && r.status == "RESERVED" {
			bad = append(bad, id+": cancelled but its reservation still holds stock")
		}
		if ps := d.payments[id]; len(ps) > 0 && ps[0].status == event.PaymentStatusAuthorized {
			bad = append(bad, id+": cancelled but its payment is still charged (authorized, not refunded)")
		}
		if hasDel && del.status != delivery.StatusCancelled {
			bad = append(bad, fmt.Sprintf("%s: cancelled but its delivery is %s", id, del.status))
		}
		if d.waiting[id] {
			bad = append(bad, id+": cancelled but still in the driver queue")
		}
	}
	for id, ps := range d.payments {
		if len(ps) == 0 || ps[0].status != payment.StatusRefunded {
			continue
		}
		if refusal, ok := d.cancellations[id]; !ok || refusal != "" {
			bad = append(bad, id+": refunded without an accepted cancellation")
		}
		if del, ok := d.deliveries[id]; ok && del.status == delivery.StatusDelivered {
			bad = append(bad, id+": delivered and refunded")
		}
	}
	for id := range d.cancelAsked {
		if _, ok := d.cancellations[id]; !ok {
			bad = append(bad, id+": cancellation asked for but never decided by delivery-service")
		}
	}
	rep.add("cancellations compensated", bad, cfg.MaxReport,
		"%d asked, %d accepted, %d refused: no stock, net charge, driver or queue place left; refunds only after an accepted cancellation, never after a delivery",
		len(d.cancelAsked), accepted, len(d.cancellations)-accepted)
}
