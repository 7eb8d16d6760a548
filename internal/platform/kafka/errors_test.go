package kafka

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/orderflow/orderflow/internal/event"
)

func TestBackoffBounds(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2}
	for attempt := 1; attempt <= 12; attempt++ {
		base := min(100*time.Millisecond<<(attempt-1), time.Second)
		for i := 0; i < 200; i++ {
			d := b.Delay(attempt)
			if d < time.Duration(float64(base)*0.8) || d > time.Duration(float64(base)*1.2) {
				t.Fatalf("attempt %d: delay %v outside %v±20%%", attempt, d, base)
			}
		}
	}
	if d := (Backoff{}).Delay(100); d > 6*time.Second {
		t.Fatalf("default max exceeded: %v", d)
	}
}

func TestErrorClassification(t *testing.T) {
	base := errors.New("x")
	if !IsPermanent(Permanent(base)) || !IsPermanent(fmt.Errorf("wrapped: %w", Permanent(base))) {
		t.Fatal("Permanent not recognised")
	}
	if !IsPermanent(fmt.Errorf("%w: bad", event.ErrInvalid)) {
		t.Fatal("event.ErrInvalid not permanent")
	}
	if IsPermanent(base) || IsUnavailable(base) {
		t.Fatal("plain error classified")
	}
	if !IsUnavailable(fmt.Errorf("ctx: %w", Unavailable(base))) || !errors.Is(Unavailable(base), base) {
		t.Fatal("Unavailable not recognised or not unwrapping")
	}
	if Permanent(nil) != nil || Unavailable(nil) != nil {
		t.Fatal("nil must stay nil")
	}
}
