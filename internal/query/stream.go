package query

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/kafka"
)

// Hub tells SSE subscribers that their order may have changed. Every query-api replica runs a
// group-less consumer on the four topics (a broadcast: each replica sees every event), so a stream
// is woken even when another replica applied the event; the stream then re-reads the view until it
// reflects the event. Local projections notify too, and streams also poll slowly as a safety net.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[chan time.Time]struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[string]map[chan time.Time]struct{}{}} }

// Subscribe returns a channel receiving the occurredAt of events for orderID (coalesced), and a
// cancel function.
func (h *Hub) Subscribe(orderID string) (<-chan time.Time, func()) {
	ch := make(chan time.Time, 1)
	h.mu.Lock()
	if h.subs[orderID] == nil {
		h.subs[orderID] = map[chan time.Time]struct{}{}
	}
	h.subs[orderID][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[orderID], ch)
		if len(h.subs[orderID]) == 0 {
			delete(h.subs, orderID)
		}
		h.mu.Unlock()
	}
}

// Publish wakes the subscribers of orderID.
func (h *Hub) Publish(orderID string, occurredAt time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[orderID] {
		select {
		case ch <- occurredAt:
		default: // a wake-up is already pending; the stream re-reads the whole view anyway
			select {
			case old := <-ch:
				if occurredAt.Before(old) {
					occurredAt = old
				}
			default:
			}
			select {
			case ch <- occurredAt:
			default:
			}
		}
	}
}

// active reports whether anyone listens to orderID.
func (h *Hub) active(orderID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[orderID]) > 0
}

// Broadcast consumes the topics without a group, from their end, and wakes subscribers. It reads
// only record headers' orderId key and the envelope's occurredAt.
func (h *Hub) Broadcast(ctx context.Context, kc kafka.Config, log *slog.Logger) error {
	kc.ClientID += "-broadcast"
	cl, err := kgo.NewClient(kc.Options(kgo.ConsumeTopics(event.MainTopics()...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil || f.IsClientClosed() {
			return nil
		}
		f.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Debug("broadcast fetch error", "topic", t, "err", err)
			}
		})
		f.EachRecord(func(r *kgo.Record) {
			id := string(r.Key)
			if !h.active(id) {
				return
			}
			e, err := event.Decode(r.Value)
			if err != nil {
				return
			}
			h.Publish(id, e.OccurredAt)
		})
	}
}
