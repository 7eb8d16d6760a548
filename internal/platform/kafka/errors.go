package kafka

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can fix (validation, unknown schema version): the runner
// dead-letters the record at once. Errors wrapping event.ErrInvalid are permanent too.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent or wraps event.ErrInvalid.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) || errors.Is(err, event.ErrInvalid)
}

type unavailableError struct{ err error }

func (e unavailableError) Error() string { return e.err.Error() }
func (e unavailableError) Unwrap() error { return e.err }

// Unavailable marks err as "a dependency is down" (Postgres, Cassandra unreachable) or "a business
// resource is exhausted for now" (no free driver). The runner retries such errors without an attempt
// limit, pausing only that partition, because dead-lettering a record for an outage would turn an
// outage into data that needs manual repair.
func Unavailable(err error) error {
	if err == nil {
		return nil
	}
	return unavailableError{err}
}

// IsUnavailable reports whether err was marked with Unavailable.
func IsUnavailable(err error) bool {
	var u unavailableError
	return errors.As(err, &u)
}

// Backoff computes retry delays: Initial doubled per attempt up to Max, with ±Jitter (fraction)
// randomisation so that partitions retrying together do not stampede a recovering dependency.
type Backoff struct {
	Initial time.Duration // default 100ms
	Max     time.Duration // default 5s
	Jitter  float64       // default 0.2
}

// Delay returns the wait before retry number attempt (1-based).
func (b Backoff) Delay(attempt int) time.Duration {
	initial, maxD, jitter := b.Initial, b.Max, b.Jitter
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if maxD <= 0 {
		maxD = 5 * time.Second
	}
	if jitter <= 0 || jitter >= 1 {
		jitter = 0.2
	}
	d := initial
	for i := 1; i < attempt && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	f := 1 - jitter + 2*jitter*rand.Float64() //nolint:gosec // backoff jitter, not a secret
	return time.Duration(float64(d) * f)
}
