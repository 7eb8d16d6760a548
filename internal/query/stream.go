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

// Hub tells SSE subscribers that their order may have changed. While any stream is open, every
// query-api replica runs a group-less consumer on the four topics (a broadcast: each replica sees
// every event), so a stream is woken even when another replica applied the event; the stream then
// re-reads the view until it reflects the event. Local projections notify too, and streams also poll
// slowly as a safety net.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[chan time.Time]struct{}
	// wanted receives a signal when a subscriber arrives, lastSub is when the last one left; the
	// broadcast consumer runs only while streams are open (plus Idle), so a replica nobody watches
	// does not read every event twice. Watchers (long-poll reads) do not count.
	wanted    chan struct{}
	streams   int
	lastSub   time.Time
	consuming bool
	// Idle is how long the broadcast consumer outlives the last subscriber (default 30s).
	Idle time.Duration
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{subs: map[string]map[chan time.Time]struct{}{}, wanted: make(chan struct{}, 1), Idle: 30 * time.Second}
}

// Subscribe returns a channel receiving the occurredAt of events for orderID (coalesced), and a
// cancel function. It starts the broadcast consumer if it is not running.
func (h *Hub) Subscribe(orderID string) (<-chan time.Time, func()) {
	ch, cancel := h.Watch(orderID)
	h.mu.Lock()
	h.streams++
	h.mu.Unlock()
	select {
	case h.wanted <- struct{}{}:
	default:
	}
	return ch, func() {
		cancel()
		h.mu.Lock()
		h.streams--
		h.lastSub = time.Now()
		h.mu.Unlock()
	}
}

// Watch is Subscribe without the broadcast consumer: only this replica's projection wakes the
// channel (long-poll reads, which re-read anyway, use it).
func (h *Hub) Watch(orderID string) (<-chan time.Time, func()) {
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

// idleSince reports whether nobody has subscribed for longer than d.
func (h *Hub) idleSince(d time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams == 0 && time.Since(h.lastSub) > d
}

// Consuming reports whether the broadcast consumer is running.
func (h *Hub) Consuming() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.consuming
}

func (h *Hub) setConsuming(b bool) {
	h.mu.Lock()
	h.consuming = b
	h.mu.Unlock()
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

// Broadcast wakes subscribers with the events of their orders until ctx ends: whenever streams are
// open it consumes the topics without a group, from their end (a stream reads the view itself when
// it starts, so earlier events are not needed), and it stops consuming once the last stream has been
// gone for Idle.
func (h *Hub) Broadcast(ctx context.Context, kc kafka.Config, log *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.wanted:
		}
		if err := h.consume(ctx, kc, log); err != nil {
			return err
		}
	}
}

// consume runs the broadcast consumer until ctx ends or the hub has been idle for Idle. It reads
// only the record key (the orderId) and the envelope's occurredAt.
func (h *Hub) consume(ctx context.Context, kc kafka.Config, log *slog.Logger) error {
	kc.ClientID += "-broadcast"
	cl, err := kgo.NewClient(kc.Options(kgo.ConsumeTopics(event.MainTopics()...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	h.setConsuming(true)
	defer h.setConsuming(false)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(min(h.Idle/2, time.Second))
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				if h.idleSince(h.Idle) {
					stop()
					return
				}
			}
		}
	}()
	for {
		f := cl.PollFetches(pctx)
		if pctx.Err() != nil || f.IsClientClosed() {
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
