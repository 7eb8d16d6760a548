package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/platform/cass"
)

// WriteCoalescer is the Cassandra store with write coalescing: mutations handed to Apply by concurrent
// callers (the projection's partition workers) are sent together as one unlogged batch per round
// trip, so Cassandra parses, schedules and answers one request for many events. Nothing waits for
// a batch to fill: a flusher takes what is queued the moment it is free, so at low load every
// write goes alone and at high load writes share requests (group commit).
//
// Each mutation keeps its own USING TIMESTAMP cells, so a batch means the same as its parts applied
// one by one. Batches span partitions, which suits one node or a small cluster; on a large one set
// the batch size to 1 (see QUERY_WRITE_BATCH).
type WriteCoalescer struct {
	*Cassandra
	in       chan *pendingWrite
	stopped  chan struct{}
	maxCount int
	maxBytes int
	flushers int
	sizes    prometheus.Histogram
	// deep wakes the standby flushers: writes are queueing faster than the eager ones send them.
	deep chan struct{}
	// standbyWrites counts requests sent by standby flushers (tests read it).
	standbyWrites atomic.Int64
}

// eagerFlushers always take what is queued at once; the other flushers stand by until writes queue
// up (at least half a batch waiting after a flusher took its own). At low load two in flight make
// larger batches than four (2.2 events per request at 100 orders/s instead of 1.5); under heavy
// load the standby flushers keep the projection from falling behind.
const eagerFlushers = 2

type pendingWrite struct {
	m    Mutation
	done chan error
	span trace.Span // the caller's span when it is recorded: the batch's span is repeated under it
}

func newPendingWrite(ctx context.Context, m Mutation) *pendingWrite {
	p := &pendingWrite{m: m, done: make(chan error, 1)}
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		p.span = s
	}
	return p
}

// ErrWriterStopped is returned by Apply after Run has returned; callers retry (the record is not
// acknowledged).
var ErrWriterStopped = errors.New("cassandra writer stopped")

// maxBatchBytes keeps a batch well below Cassandra's default batch_size_fail_threshold (50 KiB).
const maxBatchBytes = 32 << 10

// NewWriteCoalescer returns a WriteCoalescer writing through c with up to maxCount mutations per request and
// flushers requests in flight; it registers query_cassandra_write_batch_size.
func NewWriteCoalescer(c *Cassandra, maxCount, flushers int, reg prometheus.Registerer) *WriteCoalescer {
	maxCount, flushers = max(maxCount, 1), max(flushers, 1)
	b := &WriteCoalescer{Cassandra: c, in: make(chan *pendingWrite, 4*maxCount*flushers), stopped: make(chan struct{}),
		maxCount: maxCount, maxBytes: maxBatchBytes, flushers: flushers, deep: make(chan struct{}, flushers),
		sizes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "query_cassandra_write_batch_size",
			Help:    "Events written to Cassandra per request by the projection.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}})}
	reg.MustRegister(b.sizes)
	return b
}

// Apply queues m and waits until the batch holding it has been written (or failed).
func (b *WriteCoalescer) Apply(ctx context.Context, m Mutation) error {
	p := newPendingWrite(ctx, m)
	select {
	case b.in <- p:
	case <-b.stopped:
		return ErrWriterStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	b.wakeStandby()
	select {
	case err := <-p.done:
		return err
	case <-b.stopped: // queued just as Run returned: nobody will write it
		return ErrWriterStopped
	case <-ctx.Done(): // the write may still land; it is idempotent, so a retry is harmless
		return ctx.Err()
	}
}

// ApplyMany queues every mutation at once and waits for all of them: one goroutine per partition
// batch instead of one per event. It returns the first error.
func (b *WriteCoalescer) ApplyMany(ctx context.Context, ms []Mutation) error {
	ps := make([]*pendingWrite, 0, len(ms))
	var err error
	for _, m := range ms {
		p := newPendingWrite(ctx, m)
		select {
		case b.in <- p:
			ps = append(ps, p)
			continue
		case <-b.stopped:
			err = ErrWriterStopped
		case <-ctx.Done():
			err = ctx.Err()
		}
		break
	}
	b.wakeStandby()
	for _, p := range ps {
		select {
		case e := <-p.done:
			if err == nil {
				err = e
			}
		case <-b.stopped:
			return ErrWriterStopped
		case <-ctx.Done(): // queued writes may still land; they are idempotent
			return ctx.Err()
		}
	}
	return err
}

// Run flushes until ctx is cancelled; callers of writes still queued then get ErrWriterStopped
// (they wait on stopped too). Add it to the lifecycle group before the consumer that calls Apply, so
// it stops after it.
func (b *WriteCoalescer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range b.flushers {
		wg.Go(func() { b.flushLoop(ctx, i < eagerFlushers) })
	}
	wg.Wait()
	close(b.stopped)
	return nil
}

// wakeStandby signals a standby flusher when at least half a batch is waiting.
func (b *WriteCoalescer) wakeStandby() {
	if len(b.in) >= max(b.maxCount/2, 1) {
		select {
		case b.deep <- struct{}{}:
		default:
		}
	}
}

// flushLoop sends batches until ctx ends. An eager flusher waits for any queued write; a standby
// one for the signal that writes are queueing, and then sends batches until the queue is short.
func (b *WriteCoalescer) flushLoop(ctx context.Context, eager bool) {
	for {
		var first *pendingWrite
		if eager {
			select {
			case <-ctx.Done():
				return
			case first = <-b.in:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-b.deep:
			}
			select {
			case first = <-b.in:
			default:
				continue // drained meanwhile
			}
		}
		batch := []*pendingWrite{first}
		size := first.m.size()
	fill:
		for len(batch) < b.maxCount && size < b.maxBytes {
			select {
			case p := <-b.in:
				batch = append(batch, p)
				size += p.m.size()
			default:
				break fill
			}
		}
		b.wakeStandby()
		if !eager {
			b.standbyWrites.Add(1)
		}
		b.write(ctx, batch)
	}
}

// write sends the batch; if Cassandra refuses it as a whole for a reason other than availability,
// each mutation is retried alone so that one bad write cannot fail its neighbours.
func (b *WriteCoalescer) write(ctx context.Context, batch []*pendingWrite) {
	var spans []trace.Span
	for _, p := range batch {
		if p.span != nil && !slices.Contains(spans, p.span) {
			spans = append(spans, p.span)
		}
	}
	// A batch other callers share outlives any one caller's context; the session's own timeout
	// bounds it.
	err := b.Cassandra.write(ctx, cass.Shared(context.WithoutCancel(ctx), spans), func(q *gocql.Batch, ks string, l layout) {
		for _, p := range batch {
			l.addMutation(q, ks, p.m)
		}
	})
	b.sizes.Observe(float64(len(batch)))
	if err != nil {
		err = fmt.Errorf("write %d mutations: %w", len(batch), err)
	}
	if err != nil && len(batch) > 1 && !IsUnavailable(err) {
		for _, p := range batch {
			p.done <- b.Cassandra.Apply(cass.Shared(ctx, []trace.Span{p.span}), p.m)
		}
		return
	}
	for _, p := range batch {
		p.done <- err
	}
}

// size estimates a mutation's share of a batch in bytes (values dominate; the statements are
// prepared, so their text is not sent).
func (m Mutation) size() int {
	n := 64 + len(m.OrderID) + len(m.History.Payload) + len(m.History.Summary) + len(m.History.EventID) + len(m.History.EventType)
	for _, w := range m.Writes {
		n += 16 * (len(w.Values) + 1)
		for _, v := range w.Values {
			if s, ok := v.(string); ok {
				n += len(s)
			}
		}
	}
	if m.Customer != nil {
		n += 64 + len(m.Customer.CustomerID)
	}
	return n
}
