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
	Log             *slog.Logger
	ShutdownTimeout time.Duration // per component; default 15s
	// BeforeStop runs first on shutdown (e.g. readiness off) so load balancers drain before anything stops.
	BeforeStop func()
	components []Component
}

// Add appends a component.
func (g *Group) Add(c Component) { g.components = append(g.components, c) }

// Run starts every component and blocks until ctx is done or one component fails, then stops the
// components one by one in reverse order, each within ShutdownTimeout. It returns the first failure.
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
	for i := len(runs) - 1; i >= 0; i-- {
		runs[i].cancel()
		select {
		case <-runs[i].done:
		case <-time.After(timeout):
			g.Log.Warn("component did not stop in time", "component", g.components[i].Name, "timeout", timeout)
		}
	}
	return first
}
