// Package lifecycle runs a service's components (HTTP server, consumer runners, outbox relay) as one
// group: the first component to fail stops the others, and shutdown runs in a fixed order.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Component is one long-running part of a service. Run blocks until ctx is cancelled or it fails;
// returning nil after cancellation is a clean stop.
type Component struct {
	Name string
	Run  func(ctx context.Context) error
}

// Group runs components; Stop order is the reverse of Add order, so add dependencies (relay) before
// their users (consumers, HTTP), and the HTTP server stops first.
type Group struct {
	Log *slog.Logger
	// ShutdownTimeout bounds the whole stop after the drain delay: every component shares it, so
	// the process exits within DrainDelay + ShutdownTimeout. Default 15s.
	ShutdownTimeout time.Duration
	// BeforeStop runs first on shutdown (readiness off); then the group waits DrainDelay, still
	// serving, so load balancers see the readiness change and send nothing new before anything
	// stops. A drain delay longer than the readiness probe's period × failure threshold means no
	// request reaches a stopped server.
	BeforeStop func()
	DrainDelay time.Duration
	components []Component
}

// Add appends a component.
func (g *Group) Add(c Component) { g.components = append(g.components, c) }

// Run starts every component and blocks until ctx is done or one component fails, then drains
// (BeforeStop, DrainDelay) and stops the components one by one in reverse order, all within one
// ShutdownTimeout. It returns the first failure.
func (g *Group) Run(ctx context.Context) error {
	timeout := g.ShutdownTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	runs := make([]running, len(g.components))
	failed := make(chan error, len(g.components))
	var once sync.Once
	for i, c := range g.components {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		runs[i] = running{cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(runs[i].done)
			err := c.Run(cctx)
			if cctx.Err() == nil { // stopped on its own: fatal for the group, even with a nil error
				if err == nil {
					err = errors.New("exited unexpectedly")
				}
				failed <- fmt.Errorf("%s: %w", c.Name, err)
			}
		}()
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-failed:
		g.Log.Error("component failed, stopping", "err", first)
	}
	once.Do(func() {
		if g.BeforeStop != nil {
			g.BeforeStop()
		}
	})
	if g.DrainDelay > 0 && first == nil {
		g.Log.Info("draining: not ready, still serving", "delay", g.DrainDelay)
		time.Sleep(g.DrainDelay)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i := len(runs) - 1; i >= 0; i-- {
		runs[i].cancel()
		select {
		case <-runs[i].done:
		case <-deadline.C:
			g.Log.Warn("shutdown deadline passed, exiting without waiting for the rest", "component", g.components[i].Name, "timeout", timeout)
			for j := i - 1; j >= 0; j-- {
				runs[j].cancel()
			}
			return first
		}
	}
	return first
}
