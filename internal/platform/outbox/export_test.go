package outbox

import (
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/event"
)

// QueueRows lets the tests hold a caused transaction's NOTIFY back and send it late.
func QueueRows(b *pgx.Batch, envs ...event.Envelope) (func(*pgx.Batch), error) {
	n, err := queueRows(b, envs...)
	return n.queue, err
}

// Frame is the NOTIFY payload of one event as the caused door writes it, for any event type.
func Frame(e event.Envelope, value []byte) string { return string(appendFrame(nil, e, value)) }
