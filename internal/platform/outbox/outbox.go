// Package outbox implements the transactional outbox: services write outgoing events in the same
// Postgres transaction as their state change (Add), and a Relay publishes committed rows to Kafka
// with an idempotent producer and marks them sent.
//
// The transaction also sends a NOTIFY that carries the encoded events themselves (up to Postgres's
// 8000-byte payload limit), so the active relay, which listens, publishes them without reading them
// back; the table is read at start, after a NOTIFY without rows (events too large to carry) and
// once per poll interval as a safety net.
//
// Guarantees: nothing is published for a rolled-back transaction (its NOTIFY is never delivered);
// nothing committed is lost when Kafka, the relay or the process fails (a row stays unsent until
// Kafka acknowledged it, so it may be published more than once, never zero times); events of one
// order are published in commit order, because only one relay per database is active (a Postgres
// advisory lock elects it), it handles notifications in commit order and reads the table in id
// order, and a service writes the events of one order in transactions that follow each other
// causally (each is triggered by an event published after the previous commit).
package outbox

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/pg"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations holds the outbox table; pass it to pg.Open.
func Migrations() pg.Migrations {
	return pg.EmbeddedMigrations(migrations, "migrations", "goose_outbox")
}

// NotifyChannel is the LISTEN/NOTIFY channel that wakes the relay.
const NotifyChannel = "orderflow_outbox"

// Add stores envelopes in the caller's transaction, keyed by orderId on the topic of their type.
// They are published only if tx commits. The relay is woken by a NOTIFY delivered at commit.
func Add(ctx context.Context, tx pgx.Tx, envs ...event.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := Queue(b, envs...); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	return nil
}

// Queue appends the statements of Add to b, for callers that write their state change and its
// events in one batch (sent in one round trip, as one implicit transaction when b is sent outside an
// explicit one).
func Queue(b *pgx.Batch, envs ...event.Envelope) error {
	var n notes
	for _, e := range envs {
		topic := e.EventType.Topic()
		if topic == "" {
			return fmt.Errorf("outbox: event type %q has no topic", e.EventType)
		}
		v, err := e.Encode()
		if err != nil {
			return fmt.Errorf("outbox: encode %s: %w", e.EventType, err)
		}
		b.Queue(`INSERT INTO outbox (event_id, event_type, topic, record_key, value) VALUES ($1, $2, $3, $4, $5)`,
			e.EventID, string(e.EventType), topic, e.OrderID, v)
		n.add(v)
	}
	for _, p := range n.payloads() {
		b.Queue(`SELECT pg_notify($1, $2)`, NotifyChannel, p)
	}
	return nil
}

// maxNotifyPayload stays under Postgres's limit (payloads must be shorter than 8000 bytes).
const maxNotifyPayload = 7900

// notes packs encoded envelopes into NOTIFY payloads, each a JSON array of envelopes. Once one
// envelope does not fit in a payload of its own, it and every later one of the transaction are left
// to the table read, announced by an empty payload: the relay handles notifications in order, so
// the events still go out in the order they were written.
type notes struct {
	done     []string
	cur      []byte
	overflow bool
}

func (n *notes) add(v []byte) {
	switch {
	case n.overflow:
	case len(v)+2 > maxNotifyPayload:
		n.overflow = true
	default:
		if len(n.cur)+len(v)+2 > maxNotifyPayload {
			n.done = append(n.done, string(append(n.cur, ']')))
			n.cur = nil
		}
		if n.cur == nil {
			n.cur = append(make([]byte, 0, 1024), '[')
		} else {
			n.cur = append(n.cur, ',')
		}
		n.cur = append(n.cur, v...)
	}
}

func (n *notes) payloads() []string {
	out := n.done
	if n.cur != nil {
		out = append(out, string(append(n.cur, ']')))
	}
	if n.overflow {
		out = append(out, "")
	}
	return out
}
