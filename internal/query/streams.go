package query

import (
	"fmt"
	"sync"
	"time"
)

// streamSlots caps open Server-Sent-Event streams per client address and in total: each holds a
// goroutine, a connection and a hub subscription for as long as the client likes.
type streamSlots struct {
	perClient, total int
	idle             time.Duration // a stream whose view did not change for this long is closed
	mu               sync.Mutex
	open             int
	byClient         map[string]int
}

func newStreamSlots(c StreamLimits) *streamSlots {
	return &streamSlots{perClient: c.PerClient, total: c.Total, idle: c.Idle, byClient: map[string]int{}}
}

// acquire takes a slot for client, or says why none is free.
func (s *streamSlots) acquire(client string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.open >= s.total:
		return fmt.Sprintf("the server has %d order streams open, its limit; retry later", s.open)
	case s.byClient[client] >= s.perClient:
		return fmt.Sprintf("this address has %d order streams open, the limit per client; close one first", s.byClient[client])
	}
	s.open++
	s.byClient[client]++
	return ""
}

func (s *streamSlots) release(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.byClient[client]--; s.byClient[client] <= 0 {
		delete(s.byClient, client)
	}
}

// StreamLimits bounds the order streams (QUERY_SSE_*).
type StreamLimits struct {
	PerClient, Total int
	Idle             time.Duration
}
