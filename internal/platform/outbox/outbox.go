// Package outbox implements the transactional outbox: services write outgoing events in the same
// Postgres transaction as their state change, and a Relay publishes committed rows to Kafka with an
// idempotent producer and marks them sent.
//
// A transaction announces its events to the relay with a NOTIFY. There are two doors, and the
// difference is when that NOTIFY is sent:
//
//   - Caused, for events that react to something already announced (the consumed event, or the
//     request that opens an order): the NOTIFY follows the COMMIT and carries the encoded events
//     themselves (up to Postgres's 8000-byte payload limit), so the relay publishes them without
//     reading them back, and the commit stays out of the cluster-wide lock Postgres holds from a
//     notifying commit until its WAL flush (measured in docs/benchmarks.md).
//   - Timed, for events nobody announced a cause of (a timer's): the NOTIFY is sent inside the
//     transaction, carries no events and makes the relay read the table in id order.
//
// Why two: notifications arrive in the order of the NOTIFYs, not of the commits. A caused event
// cannot overtake an earlier event of its order, because it was written after that one was published
// (it reacts to it, directly or further down the saga). A timed event could: its transaction may
// commit right after an earlier one of the same order whose NOTIFY has not been sent yet. Read from
// the table, it goes out after that row (lower id), whose late notification is then skipped. Caused
// refuses an event that names no cause and does not open its order, so a timer cannot use it.
//
// Guarantees: nothing is published for a rolled-back transaction; nothing committed is lost when
// Kafka, the relay or the process fails (a row stays unsent until Kafka acknowledged it, so it may be
// published more than once, never zero times); events of one order are published in commit order
// (only one relay per database is active, elected by a Postgres advisory lock; it handles
// notifications in arrival order and reads the table in id order). The table is also read at start
// and once per poll interval as a safety net. Each event travels with its routing fields next to it
// (see appendFrame), so the relay neither decodes nor re-encodes the envelope's JSON: it appends
// producedAt to the encoded envelope, which is written without one.
package outbox

import (
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

// ErrUncaused: an event offered to Caused names no cause and does not open its order.
var ErrUncaused = errors.New("outbox: an event without a cause must be written with outbox.Timed")

// Caused queues the outbox rows of envs in tx's writes and has tx send their NOTIFY right after its
// COMMIT (see the package documentation). Every event must carry its cause (event.Factory.Caused sets
// it) or open its order.
func Caused(tx *pg.BatchTx, envs ...event.Envelope) error {
	for _, e := range envs {
		if e.CausationID == "" && !e.EventType.OpensOrder() {
			return fmt.Errorf("%w: %s for order %s", ErrUncaused, e.EventType, e.OrderID)
		}
	}
	n, err := queueRows(&tx.Writes, envs...)
	if err != nil {
		return err
	}
	if len(n) > 0 {
		tx.AfterCommit(n.queue)
	}
	return nil
}

// Timed queues the outbox rows of envs in tx's writes with a NOTIFY, inside the transaction, that
// makes the relay read the table: the door for events written on a timer (see the package
// documentation).
func Timed(tx *pg.BatchTx, envs ...event.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if _, err := queueRows(&tx.Writes, envs...); err != nil {
		return err
	}
	notice{""}.queue(&tx.Writes)
	return nil
}

// notice is the NOTIFY that carries a transaction's events to the relay; an empty payload asks
// for a table read.
type notice []string

func (n notice) queue(b *pgx.Batch) {
	for _, p := range n {
		b.Queue(`SELECT pg_notify($1, $2)`, NotifyChannel, p)
	}
}

// queueRows appends the outbox rows of envs to b and returns the NOTIFY that carries them.
func queueRows(b *pgx.Batch, envs ...event.Envelope) (notice, error) {
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
		b.Queue(`INSERT INTO outbox (event_id, event_type, topic, record_key, value, traceparent, tracestate) VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), NULLIF($7, ''))`,
			e.EventID, string(e.EventType), topic, e.OrderID, v, e.Trace.Parent, e.Trace.State)
		n.add(appendFrame(nil, e, v))
	}
	return n.payloads(), nil
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

// A frame is eight netstring-like fields, each `<decimal length>:<bytes>`: event id, event type,
// order id (the record key), correlation id, occurredAt (RFC 3339), traceparent, tracestate (empty
// when tracing is off) and the encoded envelope. Lengths make any byte in a field safe, and reading
// them costs nothing next to decoding JSON.
const frameFields = 8

func appendFrame(b []byte, e event.Envelope, value []byte) []byte {
	for _, f := range [frameFields - 1]string{e.EventID, string(e.EventType), e.OrderID, e.CorrelationID,
		e.OccurredAt.Format(time.RFC3339Nano), e.Trace.Parent, e.Trace.State} {
		b = append(append(strconv.AppendInt(b, int64(len(f)), 10), ':'), f...)
	}
	return append(append(strconv.AppendInt(b, int64(len(value)), 10), ':'), value...)
}

// notified is one event as the relay publishes it.
type notified struct {
	id, typ, key, correlation string
	topic                     string
	occurredAt                time.Time
	trace                     event.Trace
	value                     []byte // the encoded envelope, without producedAt
}

var errFrame = errors.New("malformed outbox notification")

// maxLengthDigits bounds a field's length prefix; payloads are shorter than 8000 bytes.
const maxLengthDigits = 4

// parseFrames reads a payload written by queueRows. Any error means the payload was not (and it is
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
		case !strings.HasPrefix(f[7], `{"`) || !strings.HasSuffix(f[7], "}"):
			// stamp appends producedAt inside the object, which needs a non-empty JSON object.
			return nil, fmt.Errorf("%w: event %s: the envelope is not an encoded object", errFrame, f[0])
		}
		topic := event.Type(f[1]).Topic()
		if topic == "" {
			// Written by a newer version: the table has the row's topic.
			return nil, fmt.Errorf("%w: event %s has type %q, unknown to this version", errFrame, f[0], f[1])
		}
		out = append(out, notified{id: f[0], typ: f[1], key: f[2], correlation: f[3], topic: topic, occurredAt: at,
			trace: event.Trace{Parent: f[5], State: f[6]}, value: []byte(f[7])})
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
		occurredAt: e.OccurredAt, trace: e.Trace, value: v}, nil
}

// stamp returns the encoded envelope with producedAt appended as its last field.
func stamp(value []byte, at time.Time) []byte {
	out := make([]byte, 0, len(value)+48)
	out = append(out, value[:len(value)-1]...)
	out = append(out, `,"producedAt":"`...)
	out = at.AppendFormat(out, time.RFC3339Nano)
	return append(out, `"}`...)
}
