// Package outbox implements the transactional outbox: services write outgoing events in the same
// Postgres transaction as their state change (Add), and a Relay publishes committed rows to Kafka
// with an idempotent producer and marks them sent.
//
// The transaction also sends a NOTIFY that carries the encoded events themselves (up to Postgres's
// 8000-byte payload limit), so the active relay, which listens, publishes them without reading them
// back; the table is read at start, after a NOTIFY without rows (events too large to carry) and
// once per poll interval as a safety net. Each event travels with its routing fields next to it
// (see appendFrame), so the relay neither decodes nor re-encodes the envelope's JSON: it appends
// producedAt to the encoded envelope, which Queue writes without one.
//
// Guarantees: nothing is published for a rolled-back transaction (its NOTIFY is never delivered);
// nothing committed is lost when Kafka, the relay or the process fails (a row stays unsent until
// Kafka acknowledged it, so it may be published more than once, never zero times); events of one
// order are published in commit order, because only one relay per database is active (a Postgres
// advisory lock elects it), it handles notifications in commit order and reads the table in id
// order, and a service writes the events of one order in transactions that follow each other
// causally (each is triggered by an event published after the previous commit). The first event of
// an order may notify after its COMMIT instead (QueueRows): nothing of its order precedes it.
package outbox

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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

// AddViaTable stores envelopes in the caller's transaction like Add, but its NOTIFY carries no
// events: it makes the relay read the table, which publishes every unsent row in id order. That is
// for writers that are not caused by the previous event of their orders (a timer's): whatever an
// earlier transaction wrote for the same order has a lower id (it committed before this one could
// see its rows) and goes out first, even if that transaction's own NOTIFY, sent after its COMMIT
// (QueueRows), has not arrived yet.
func AddViaTable(ctx context.Context, tx pgx.Tx, envs ...event.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if _, err := QueueRows(b, envs...); err != nil {
		return err
	}
	Notice{""}.Queue(b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	return nil
}

// Queue appends the statements of Add to b, for callers that write their state change and its
// events in one batch (sent in one round trip, as one implicit transaction when b is sent outside an
// explicit one).
func Queue(b *pgx.Batch, envs ...event.Envelope) error {
	n, err := QueueRows(b, envs...)
	if err != nil {
		return err
	}
	n.Queue(b)
	return nil
}

// Notice is the NOTIFY that carries a transaction's events to the relay.
type Notice []string

// Queue appends the NOTIFY to b.
func (n Notice) Queue(b *pgx.Batch) {
	for _, p := range n {
		b.Queue(`SELECT pg_notify($1, $2)`, NotifyChannel, p)
	}
}

// QueueRows appends the outbox rows of envs to b and returns their NOTIFY, which the caller queues
// after its COMMIT in the same batch: `BEGIN; …rows…; COMMIT; NOTIFY` (QueueAfterCommit does that for
// a pg.Pipe). The server runs a failed batch's statements only up to the failure, so a NOTIFY follows
// only a COMMIT that succeeded; and a NOTIFY outside the writing transaction keeps that transaction
// out of the cluster-wide lock Postgres holds from a notifying transaction's commit until its WAL
// flush is over; under load that queues most commits of the system behind one another
// (measured in docs/benchmarks.md).
//
// Notifications are then in the order of the NOTIFYs, not of the commits. Each order's events still
// go out in commit order when every transaction that writes a later event of the same order either
// starts after these events were published, because it reacts to them directly or further down the
// saga (the POST and the inventory, payment and delivery handlers), so this NOTIFY was sent by then
// or the relay read the rows from the table and skips the late notification; or announces its events
// with AddViaTable (delivery-service's scheduler, which writes on a timer).
func QueueRows(b *pgx.Batch, envs ...event.Envelope) (Notice, error) {
	var n notes
	for _, e := range envs {
		topic := e.EventType.Topic()
		if topic == "" {
			return nil, fmt.Errorf("outbox: event type %q has no topic", e.EventType)
		}
		e.ProducedAt = time.Time{} // the relay appends it when it hands the event to Kafka
		v, err := e.Encode()
		if err != nil {
			return nil, fmt.Errorf("outbox: encode %s: %w", e.EventType, err)
		}
		b.Queue(`INSERT INTO outbox (event_id, event_type, topic, record_key, value) VALUES ($1, $2, $3, $4, $5)`,
			e.EventID, string(e.EventType), topic, e.OrderID, v)
		n.add(appendFrame(nil, e, v))
	}
	return n.payloads(), nil
}

// QueueAfterCommit appends the outbox rows of envs to b, the writes p commits, and has p send their
// NOTIFY right after the COMMIT. Only for causal writers (see QueueRows).
func QueueAfterCommit(p *pg.Pipe, b *pgx.Batch, envs ...event.Envelope) error {
	n, err := QueueRows(b, envs...)
	if err != nil {
		return err
	}
	if len(n) > 0 {
		p.AfterCommit(n.Queue)
	}
	return nil
}

// maxNotifyPayload stays under Postgres's limit (payloads must be shorter than 8000 bytes).
const maxNotifyPayload = 7900

// notes packs frames into NOTIFY payloads. Once one frame does not fit in a payload of its own, it
// and every later one of the transaction are left to the table read, announced by an empty payload:
// the relay handles notifications in order, so the events still go out in the order they were
// written.
type notes struct {
	done     []string
	cur      []byte
	overflow bool
}

func (n *notes) add(frame []byte) {
	switch {
	case n.overflow:
	case len(frame) > maxNotifyPayload:
		n.overflow = true
	default:
		if len(n.cur)+len(frame) > maxNotifyPayload {
			n.done = append(n.done, string(n.cur))
			n.cur = nil
		}
		n.cur = append(n.cur, frame...)
	}
}

func (n *notes) payloads() []string {
	out := n.done
	if n.cur != nil {
		out = append(out, string(n.cur))
	}
	if n.overflow {
		out = append(out, "")
	}
	return out
}

// A frame is six netstring-like fields, each `<decimal length>:<bytes>`: event id, event type,
// order id (the record key), correlation id, occurredAt (RFC 3339) and the encoded envelope. Lengths
// make any byte in a field safe, and reading them costs nothing next to decoding JSON.
const frameFields = 6

func appendFrame(b []byte, e event.Envelope, value []byte) []byte {
	for _, f := range [frameFields - 1]string{e.EventID, string(e.EventType), e.OrderID, e.CorrelationID,
		e.OccurredAt.Format(time.RFC3339Nano)} {
		b = append(append(strconv.AppendInt(b, int64(len(f)), 10), ':'), f...)
	}
	return append(append(strconv.AppendInt(b, int64(len(value)), 10), ':'), value...)
}

// notified is one event as the relay publishes it.
type notified struct {
	id, typ, key, correlation string
	occurredAt                time.Time
	value                     []byte // the encoded envelope, without producedAt
}

var errFrame = errors.New("malformed outbox notification")

// maxLengthDigits bounds a field's length prefix; payloads are shorter than 8000 bytes.
const maxLengthDigits = 4

// parseFrames reads a payload written by Queue. Any error means the payload was not (and it is
// handled like an event too large to carry: by reading the table); it says where parsing stopped.
func parseFrames(p string) ([]notified, error) {
	var out []notified
	for p != "" {
		var f [frameFields]string
		for i := range f {
			colon := strings.IndexByte(p, ':')
			if colon < 1 || colon > maxLengthDigits {
				return nil, fmt.Errorf("%w: event %d, field %d has no length", errFrame, len(out)+1, i+1)
			}
			n, err := strconv.Atoi(p[:colon])
			if err != nil || n < 0 || n > len(p)-colon-1 {
				return nil, fmt.Errorf("%w: event %d, field %d has a bad length %q", errFrame, len(out)+1, i+1, p[:colon])
			}
			f[i], p = p[colon+1:colon+1+n], p[colon+1+n:]
		}
		at, err := time.Parse(time.RFC3339Nano, f[4])
		switch {
		case f[0] == "":
			return nil, fmt.Errorf("%w: event %d has no id", errFrame, len(out)+1)
		case err != nil:
			return nil, fmt.Errorf("%w: event %s: occurredAt: %w", errFrame, f[0], err)
		case !strings.HasPrefix(f[5], `{"`) || !strings.HasSuffix(f[5], "}"):
			// stamp appends producedAt inside the object, which needs a non-empty JSON object.
			return nil, fmt.Errorf("%w: event %s: the envelope is not an encoded object", errFrame, f[0])
		}
		out = append(out, notified{id: f[0], typ: f[1], key: f[2], correlation: f[3], occurredAt: at, value: []byte(f[5])})
	}
	if out == nil {
		return nil, fmt.Errorf("%w: empty", errFrame)
	}
	return out, nil
}

// fromEnvelope is the table read's way to the same form.
func fromEnvelope(e event.Envelope) (notified, error) {
	e.ProducedAt = time.Time{}
	v, err := e.Encode()
	if err != nil {
		return notified{}, err
	}
	return notified{id: e.EventID, typ: string(e.EventType), key: e.OrderID, correlation: e.CorrelationID,
		occurredAt: e.OccurredAt, value: v}, nil
}

// stamp returns the encoded envelope with producedAt appended as its last field.
func stamp(value []byte, at time.Time) []byte {
	out := make([]byte, 0, len(value)+48)
	out = append(out, value[:len(value)-1]...)
	out = append(out, `,"producedAt":"`...)
	out = at.AppendFormat(out, time.RFC3339Nano)
	return append(out, `"}`...)
}
