// Package inbox makes event handlers idempotent: a handler records (consumer, eventId) in
// processed_events inside the same transaction as its side effects, so a redelivered event is
// recognised and its effects are not applied twice. Records older than the retention are purged
// (see Retention); the retention must cover the time a record can still be redelivered, which is the
// topics' retention.
package inbox

import (
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orderflow/internal/platform/pg"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations holds the processed_events table; pass it to pg.Open.
func Migrations() pg.Migrations {
	return pg.EmbeddedMigrations(migrations, "migrations", "goose_inbox")
}

// Inbox records processed events for one consumer (its consumer group name).
type Inbox struct {
	consumer   string
	duplicates prometheus.Counter
}

// New returns an inbox for consumer and registers inbox_duplicates_total{consumer} on reg.
func New(consumer string, reg prometheus.Registerer) *Inbox {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "inbox_duplicates_total",
		Help:        "Redelivered events recognised by the inbox and acknowledged without effect.",
		ConstLabels: prometheus.Labels{"consumer": consumer},
	})
	reg.MustRegister(c)
	return &Inbox{consumer: consumer, duplicates: c}
}

// Record queues in b, a batch of the handler's transaction, the recording of eventIDs as processed.
// When b's results are read, fresh is called with each id that was not recorded before: its effects
// are to be applied; the others are duplicates, to be acknowledged without effect (and counted
// with Duplicate once the transaction has ended).
func (i *Inbox) Record(b *pgx.Batch, eventIDs []string, fresh func(eventID string)) {
	b.Queue(`INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[]::uuid[])
		ON CONFLICT DO NOTHING RETURNING event_id::text`, i.consumer, eventIDs).Query(func(rows pgx.Rows) error {
		var id string
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error { fresh(id); return nil })
		if err != nil {
			return fmt.Errorf("inbox: record %d events: %w", len(eventIDs), err)
		}
		return nil
	})
}

// Duplicate counts one recognised duplicate; call it after the handler's transaction ended, so the
// counter moves only for a settled outcome.
func (i *Inbox) Duplicate() { i.duplicates.Inc() }

// Retention is the purge rule for processed_events: records older than keep go (see
// service.Service.Purge).
func Retention(keep time.Duration) pg.Retention {
	return pg.Retention{Table: "processed_events", Column: "processed_at", Keep: keep}
}
