// Package inbox makes event handlers idempotent: a handler records (consumer, eventId) in
// processed_events inside the same transaction as its side effects, so a redelivered event is
// recognised and its effects are not applied twice.
package inbox

import (
	"context"
	"embed"
	"fmt"

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
	Consumer   string
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
	return &Inbox{Consumer: consumer, duplicates: c}
}

// Begin records eventID in tx. It returns false when the event was already processed: the caller
// must then apply nothing and let the transaction end (commit or roll back, both are harmless),
// and call Duplicate once it has ended, so the counter moves only for a settled outcome.
func (i *Inbox) Begin(ctx context.Context, tx pgx.Tx, eventID string) (first bool, err error) {
	tag, err := tx.Exec(ctx,
		`INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		i.Consumer, eventID)
	if err != nil {
		return false, fmt.Errorf("inbox record %s: %w", eventID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Duplicate counts one recognised duplicate; call it after the handler's transaction ended.
func (i *Inbox) Duplicate() { i.duplicates.Inc() }
