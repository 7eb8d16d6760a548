package query

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/shopspring/decimal"
	"gopkg.in/inf.v0"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/cass"
)

//go:embed cql
var cqlFiles embed.FS

// Migrate applies layout l's versioned CQL files in order to the session's keyspace, recording each
// in schema_migrations. Statements are idempotent (IF NOT EXISTS), so replicas starting together
// are safe.
func Migrate(ctx context.Context, s *gocql.Session, l layout) error {
	if err := s.Query(`CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text, applied_at timestamp)`).
		ExecContext(ctx); err != nil {
		return fmt.Errorf("schema_migrations: %w", err)
	}
	names, err := fs.Glob(cqlFiles, l.migrations()+"/*.cql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, l.migrations()+"/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", name)
		}
		var applied int
		if err := s.Query(`SELECT version FROM schema_migrations WHERE version = ?`, version).ScanContext(ctx, &applied); err == nil {
			continue
		} else if !errors.Is(err, gocql.ErrNotFound) {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		b, _ := fs.ReadFile(cqlFiles, name)
		for _, stmt := range splitCQL(string(b)) {
			if err := s.Query(stmt).ExecContext(ctx); err != nil {
				return fmt.Errorf("migration %s: %w", base, err)
			}
		}
		if err := s.Query(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, version, base, time.Now()).
			ExecContext(ctx); err != nil {
			return fmt.Errorf("record migration %s: %w", base, err)
		}
	}
	return nil
}

// splitCQL splits a file into statements on ';', dropping "--" comment lines.
func splitCQL(src string) []string {
	var lines []string
	for _, l := range strings.Split(src, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
			if i := strings.Index(l, "--"); i >= 0 {
				l = l[:i]
			}
			lines = append(lines, l)
		}
	}
	var out []string
	for _, st := range strings.Split(strings.Join(lines, "\n"), ";") {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	return out
}

// Cassandra is the production Store: the serving generation's tables (see generations.go).
type Cassandra struct {
	S   *gocql.Session
	ptr *pointer
}

// NewCassandra is the store of the read model whose base keyspace is base, on a session that may
// be bound to any keyspace (statements name theirs).
func NewCassandra(s *gocql.Session, base string) *Cassandra {
	return &Cassandra{S: s, ptr: newPointer(s, base)}
}

// Open connects to the read model of cfg.Keyspace (the base keyspace, created if needed), creates
// its generation row's table and migrates the generations the row names.
func Open(ctx context.Context, cfg cass.Config) (*Cassandra, error) {
	s, err := cass.Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c := NewCassandra(s, cfg.Keyspace)
	if err := c.open(ctx, cfg); err != nil {
		s.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cassandra) open(ctx context.Context, cfg cass.Config) error {
	for _, stmt := range generationTable {
		if err := c.S.Query(stmt).ExecContext(ctx); err != nil {
			return fmt.Errorf("create %s.read_model_generation: %w", cfg.Keyspace, err)
		}
	}
	if err := createGenerationRow(ctx, c.S, cfg.Keyspace); err != nil {
		return err
	}
	g, err := c.ptr.read(ctx)
	if err != nil {
		return err
	}
	for _, ks := range g.writes() {
		if err := migrateKeyspace(ctx, cfg, c.S, ks, g.layoutOf(ks)); err != nil {
			return err
		}
	}
	return nil
}

// migrateKeyspace creates keyspace ks with cfg's replication and applies layout l's migrations in it.
func migrateKeyspace(ctx context.Context, cfg cass.Config, base *gocql.Session, ks string, l layout) error {
	if ks == cfg.Keyspace {
		return Migrate(ctx, base, l)
	}
	cfg.Keyspace = ks
	s, err := cass.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return Migrate(ctx, s, l)
}

// Close closes the session.
func (c *Cassandra) Close() { c.S.Close() }

var viewColumns = []string{FCustomerID, FTotalAmount, FCurrency, FStatus, FCreatedAt, FUpdatedAt, FPaymentID, FDeliveryID,
	FDriverName, FETA, FReservationID, FRejectionReason, FFailureReason, FDeliveredAt, FLastEventAt, FWaitingSince,
	FCancelReason, FCancelledAt, FRefundedAt}

// Apply writes the mutation alone: its statements (see layout.addMutation) in one unlogged batch,
// which Cassandra applies as one mutation of the order's partition (and, for order.created, one of
// the customer's).
func (c *Cassandra) Apply(ctx context.Context, m Mutation) error {
	return c.write(ctx, ctx, func(b *gocql.Batch, ks string, l layout) { l.addMutation(b, ks, m) })
}

// write sends a batch, filled by fill for each keyspace in its layout, to every generation that
// takes writes (one batch per keyspace, so each stays one mutation per partition). execCtx runs the
// batches.
func (c *Cassandra) write(ctx, execCtx context.Context, fill func(b *gocql.Batch, ks string, l layout)) error {
	g, readAt, err := c.ptr.current(ctx)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for {
		for _, ks := range g.writes() {
			if done[ks] {
				continue
			}
			b := c.S.Batch(gocql.UnloggedBatch)
			fill(b, ks, g.layoutOf(ks))
			if err := b.ExecContext(execCtx); err != nil {
				return fmt.Errorf("write the read model in %s: %w", ks, err)
			}
			done[ks] = true
		}
		// A write that ended after its copy of the row aged past generationMaxAge may have missed
		// a generation a rebuild added meanwhile (rebuild relies on that age): it goes to the
		// generations of a fresh copy too.
		if time.Since(readAt) < c.ptr.maxAge {
			return nil
		}
		if g, readAt, err = c.ptr.current(ctx); err != nil {
			return err
		}
	}
}

// applyManyTo writes ms to keyspace ks of layout l only (a rebuild filling its new generation), in batches
// below maxBatchBytes. A batch Cassandra refuses for a reason other than availability is written
// a mutation at a time; each mutation refused then goes to reject with its error (the others are
// written). Unavailability is returned.
func (c *Cassandra) applyManyTo(ctx context.Context, ks string, l layout, ms []Mutation, reject func(Mutation, error)) error {
	for len(ms) > 0 {
		n, size := 0, 0
		for n < len(ms) && (n == 0 || size+ms[n].size() <= maxBatchBytes) {
			size += ms[n].size()
			n++
		}
		chunk := ms[:n]
		ms = ms[n:]
		b := c.S.Batch(gocql.UnloggedBatch)
		for _, m := range chunk {
			l.addMutation(b, ks, m)
		}
		switch err := b.ExecContext(ctx); {
		case err == nil:
		case IsUnavailable(err):
			return fmt.Errorf("write the read model in %s: %w", ks, err)
		default: // one bad mutation must not fail its neighbours
			for _, m := range chunk {
				one := c.S.Batch(gocql.UnloggedBatch)
				l.addMutation(one, ks, m)
				if err := one.ExecContext(ctx); IsUnavailable(err) {
					return fmt.Errorf("write the read model in %s: %w", ks, err)
				} else if err != nil {
					reject(m, err)
				}
			}
		}
	}
	return nil
}

// toCQL converts fold values to driver types: Money becomes an exact inf.Dec (the driver's decimal).
func toCQL(v any) any {
	if m, ok := v.(event.Money); ok {
		return *new(inf.Dec).SetUnscaledBig(m.Coefficient()).SetScale(inf.Scale(-m.Exponent()))
	}
	return v
}

func fromInf(d *inf.Dec) *event.Money {
	if d == nil || d.UnscaledBig().Sign() == 0 {
		return nil // null (a real total is always positive)
	}
	m := event.Money{Decimal: decimal.NewFromBigInt(d.UnscaledBig(), -int32(d.Scale()))}
	return &m
}

// serving returns the keyspace reads go to and its layout.
func (c *Cassandra) serving(ctx context.Context) (string, layout, error) {
	g, _, err := c.ptr.current(ctx)
	return g.Serving, g.layoutOf(g.Serving), err
}

func scanView(sc interface{ Scan(...any) bool }, v *View) bool {
	var (
		status, customer, currency, delivery, driver *string
		reservation, rejection, failure              *string
		created, updated, eta, delivered, last       *time.Time
		waiting, cancelledAt, refunded               *time.Time
		cancelReason                                 *string
		payment                                      *int64
	)
	var total *inf.Dec // nil while order.created has not been projected (the driver refuses null into inf.Dec)
	ok := sc.Scan(&v.OrderID, &customer, &total, &currency, &status, &created, &updated, &payment, &delivery, &driver, &eta,
		&reservation, &rejection, &failure, &delivered, &last, &waiting, &cancelReason, &cancelledAt, &refunded)
	if !ok {
		return false
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	v.CustomerID, v.Currency, v.Status, v.DeliveryID, v.DriverName = str(customer), str(currency), str(status), str(delivery), str(driver)
	v.ReservationID, v.RejectionReason, v.FailureReason, v.CancelReason = str(reservation), str(rejection), str(failure), str(cancelReason)
	v.TotalAmount = fromInf(total)
	v.PaymentID = payment
	for _, pair := range []struct {
		dst **time.Time
		src *time.Time
	}{{&v.CreatedAt, created}, {&v.UpdatedAt, updated}, {&v.EstimatedDeliveryTime, eta}, {&v.DeliveredAt, delivered}, {&v.LastEventAt, last}, {&v.WaitingSince, waiting},
		{&v.CancelledAt, cancelledAt}, {&v.RefundedAt, refunded}} {
		if pair.src != nil && !pair.src.IsZero() {
			t := pair.src.UTC()
			*pair.dst = &t
		}
	}
	return true
}

// Get implements Store.
func (c *Cassandra) Get(ctx context.Context, id string) (View, error) {
	ks, l, err := c.serving(ctx)
	if err != nil {
		return View{}, err
	}
	var v View
	it := c.S.Query(l.selectView(ks), id).IterContext(ctx)
	found := scanView(it, &v)
	if err := it.Close(); err != nil {
		return View{}, fmt.Errorf("read %s.%s: %w", ks, l.viewTable(), err)
	}
	if !found {
		return View{}, ErrNotFound
	}
	return v, nil
}

// History implements Store.
func (c *Cassandra) History(ctx context.Context, id string) ([]HistoryEntry, error) {
	ks, l, err := c.serving(ctx)
	if err != nil {
		return nil, err
	}
	it := c.S.Query(`SELECT event_id, event_type, occurred_at, producer, summary FROM `+ks+`.`+l.timelineTable()+` WHERE order_id = ?`, id).IterContext(ctx)
	var out []HistoryEntry
	var h HistoryEntry
	for it.Scan(&h.EventID, &h.EventType, &h.OccurredAt, &h.Producer, &h.Summary) {
		h.OrderID, h.OccurredAt = id, h.OccurredAt.UTC()
		out = append(out, h)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("read %s.%s: %w", ks, l.timelineTable(), err)
	}
	return out, nil
}

// ListByCustomer implements Store with Cassandra's paging state as the cursor.
func (c *Cassandra) ListByCustomer(ctx context.Context, customerID string, limit int, cursor []byte) ([]View, []byte, error) {
	ks, _, err := c.serving(ctx)
	if err != nil {
		return nil, nil, err
	}
	it := c.S.Query(`SELECT order_id FROM `+ks+`.orders_by_customer WHERE customer_id = ?`, customerID).
		PageSize(limit).PageState(cursor).IterContext(ctx)
	var ids []string
	var id string
	for len(ids) < limit && it.Scan(&id) {
		ids = append(ids, id)
	}
	next := it.PageState()
	if err := it.Close(); err != nil {
		return nil, nil, fmt.Errorf("read orders_by_customer: %w", err)
	}
	views, err := c.getMany(ctx, ids)
	return views, next, err
}

func (c *Cassandra) getMany(ctx context.Context, ids []string) ([]View, error) {
	views := make([]View, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { views[i], errs[i] = c.Get(ctx, id) })
	}
	wg.Wait()
	out := views[:0]
	for i := range views {
		switch {
		case errs[i] == nil:
			out = append(out, views[i])
		case !errors.Is(errs[i], ErrNotFound):
			return nil, errs[i]
		}
	}
	return out, nil
}

// List implements Store: a token-ordered scan, one page per call.
func (c *Cassandra) List(ctx context.Context, limit int, cursor []byte) ([]View, []byte, error) {
	ks, l, err := c.serving(ctx)
	if err != nil {
		return nil, nil, err
	}
	it := c.S.Query(l.selectViews(ks)).PageSize(limit).PageState(cursor).IterContext(ctx)
	var out []View
	for len(out) < limit {
		var v View
		if !scanView(it, &v) {
			break
		}
		out = append(out, v)
	}
	next := it.PageState()
	if err := it.Close(); err != nil {
		return nil, nil, fmt.Errorf("scan %s.%s: %w", ks, l.viewTable(), err)
	}
	return out, next, nil
}

// IsUnavailable classifies Cassandra errors: everything except errors in the request itself
// (syntax, invalid, configuration, authorization) means "Cassandra cannot serve now", which the
// projection retries without limit instead of dead-lettering.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var syntax *gocql.RequestErrSyntax
	var invalid *gocql.RequestErrInvalid
	var cfg *gocql.RequestErrConfig
	var unauth *gocql.RequestErrUnauthorized
	if errors.As(err, &syntax) || errors.As(err, &invalid) || errors.As(err, &cfg) || errors.As(err, &unauth) ||
		errors.Is(err, event.ErrInvalid) {
		return false
	}
	return true
}
