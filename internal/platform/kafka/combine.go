package kafka

import (
	"context"
	"slices"
	"sync"

	"github.com/orderflow/orderflow/internal/event"
)

// combiner turns concurrent calls of a batch handler — one per partition worker — into one call over
// their events, concatenated call by call (so each partition's events stay in order). No call waits
// for others to arrive: a call made while no round runs starts one at once; calls made during a round
// queue up and the first of them runs the next round for all of them (group commit).
type combiner struct {
	batch func(context.Context, []event.Envelope) error

	mu      sync.Mutex
	running bool        // a round is running or about to be started by a call given the lead
	queue   []*combined // calls waiting for the next round
	rounds  func(calls int)
}

// combined is one call waiting for, or taking part in, a round.
type combined struct {
	ctx  context.Context
	envs []event.Envelope
	err  error
	done chan struct{} // closed once err is final
	lead chan struct{} // closed (under mu) when this call is to run the next round
}

func newCombiner(batch func(context.Context, []event.Envelope) error, rounds func(calls int)) *combiner {
	return &combiner{batch: batch, rounds: rounds}
}

// do is the combined batch handler.
func (c *combiner) do(ctx context.Context, envs []event.Envelope) error {
	cl := &combined{ctx: ctx, envs: envs, done: make(chan struct{}), lead: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, cl)
	if !c.running {
		c.running = true
		close(cl.lead)
	}
	c.mu.Unlock()
	for {
		select {
		case <-cl.done:
			return cl.err
		case <-cl.lead:
			c.round(ctx)
			return cl.err // cl was in the queue the round took
		case <-ctx.Done():
			c.mu.Lock()
			i := slices.Index(c.queue, cl)
			leading := isClosed(cl.lead)
			if i >= 0 && !leading {
				c.queue = slices.Delete(c.queue, i, i+1)
				c.mu.Unlock()
				return ctx.Err()
			}
			c.mu.Unlock()
			if !leading {
				// A round holds the call: its events may still be committed, which is harmless (handlers are
				// idempotent and the runner hands the records over again).
				return ctx.Err()
			}
			// Given the lead: run the round anyway, or the calls queued behind would wait for ever.
			c.round(ctx)
			return cl.err
		}
	}
}

// round runs every queued call as one batch, then hands the lead to the first call queued meanwhile.
// The batch outlives the leading call's context (the others share it); attemptTimeout bounds it, as it
// bounds any attempt. If the combined batch fails, each call is retried alone with its own context, so
// every call gets the error it would have got without the combiner.
func (c *combiner) round(ctx context.Context) {
	c.mu.Lock()
	calls := c.queue
	c.queue = nil
	c.mu.Unlock()
	if c.rounds != nil {
		c.rounds(len(calls))
	}
	var all []event.Envelope
	if len(calls) == 1 {
		all = calls[0].envs
	} else {
		for _, cl := range calls {
			all = append(all, cl.envs...)
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptTimeout)
	err := c.batch(rctx, all)
	cancel()
	if err != nil && len(calls) > 1 {
		for _, cl := range calls {
			cl.err = c.batch(cl.ctx, cl.envs)
			close(cl.done)
		}
	} else {
		for _, cl := range calls {
			cl.err = err
			close(cl.done)
		}
	}
	c.mu.Lock()
	if len(c.queue) > 0 {
		close(c.queue[0].lead)
	} else {
		c.running = false
	}
	c.mu.Unlock()
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
