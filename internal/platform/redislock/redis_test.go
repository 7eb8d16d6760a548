package redislock_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderflow/orderflow/internal/platform/redislock"
	"github.com/orderflow/orderflow/internal/testkit"
)

func TestLockIsExclusiveAndOwnerChecked(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	c := testkit.Redis(t)
	l := &redislock.Locker{Client: c, Prefix: testkit.Name("lock") + ":", TTL: 300 * time.Millisecond, Wait: 50 * time.Millisecond}
	a, err := l.Acquire(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, "o1"); !errors.Is(err, redislock.ErrNotAcquired) {
		t.Fatalf("second owner got the lock: %v", err)
	}
	if other, err := l.Acquire(ctx, "o2"); err != nil {
		t.Fatal(err)
	} else {
		_, _ = other.Release(ctx)
	}
	if ttl := c.PTTL(ctx, l.Prefix+"o1").Val(); ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("lock ttl %v", ttl)
	}
	// Let a's lock expire; b takes it; a's late release must not free b's lock.
	for deadline := time.Now().Add(5 * time.Second); c.Exists(ctx, l.Prefix+"o1").Val() == 1; {
		if time.Now().After(deadline) {
			t.Fatal("lock did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.Wait = time.Second
	b, err := l.Acquire(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Release(ctx); ok || err != nil {
		t.Fatalf("expired owner released someone else's lock (ok=%v err=%v)", ok, err)
	}
	if c.Exists(ctx, l.Prefix+"o1").Val() != 1 {
		t.Fatal("b's lock was deleted")
	}
	if ok, _ := b.Release(ctx); !ok {
		t.Fatal("owner could not release")
	}
}

func TestDedupMarksWithTTL(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	d := &redislock.Dedup{Client: testkit.Redis(t), Prefix: testkit.Name("dedup") + ":", TTL: time.Minute}
	if seen, err := d.Seen(ctx, "e1"); seen || err != nil {
		t.Fatalf("fresh id seen=%v err=%v", seen, err)
	}
	if err := d.Mark(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if seen, _ := d.Seen(ctx, "e1"); !seen {
		t.Fatal("marked id not seen")
	}
	if ttl := d.Client.TTL(ctx, d.Prefix+"e1").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("ttl %v", ttl)
	}
}

// pipelines counts the round trips a client makes.
type pipelines struct{ n atomic.Int32 }

func (*pipelines) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// The pipelined forms, one round trip each: TryAcquireAndCheck takes the free locks, reports the
// held one as nil without waiting and reads the marks; MarkAndRelease writes marks that Seen agrees
// with and frees only its own locks.
func TestManyAtOnce(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	c := testkit.Redis(t)
	l := &redislock.Locker{Client: c, Prefix: testkit.Name("lock") + ":", TTL: time.Minute}
	d := &redislock.Dedup{Client: c, Prefix: testkit.Name("dedup") + ":", TTL: time.Minute}
	foreign, err := l.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	trips := &pipelines{}
	c.AddHook(trips)
	if err := redislock.MarkAndRelease(ctx, d, []string{"e1", "e3"}, l, nil); err != nil {
		t.Fatal(err)
	}
	locks, seen, err := redislock.TryAcquireAndCheck(ctx, l, []string{"a", "b", "c"}, d, []string{"e1", "e2", "e3"})
	if err != nil {
		t.Fatal(err)
	}
	if locks[0] == nil || locks[1] != nil || locks[2] == nil {
		t.Fatalf("locks %v: want a and c taken, b (held elsewhere) nil", locks)
	}
	if !seen[0] || seen[1] || !seen[2] {
		t.Fatalf("seen %v; want e1 and e3", seen)
	}
	if ttl := c.PTTL(ctx, l.Prefix+"a").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("lock ttl %v", ttl)
	}
	if ttl := c.PTTL(ctx, d.Prefix+"e1").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("mark ttl %v", ttl)
	}
	trips.n.Store(0)
	if err := redislock.MarkAndRelease(ctx, d, []string{"e2"}, l, locks); err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load(); n != 1 {
		t.Fatalf("MarkAndRelease took %d round trips", n)
	}
	if n := c.Exists(ctx, l.Prefix+"a", l.Prefix+"c").Val(); n != 0 {
		t.Fatalf("%d of our locks left after MarkAndRelease", n)
	}
	if one, _ := d.Seen(ctx, "e2"); !one {
		t.Fatal("Seen disagrees with MarkAndRelease")
	}
	if ok, _ := foreign.Release(ctx); !ok {
		t.Fatal("MarkAndRelease freed a lock it did not own")
	}
	trips.n.Store(0)
	if _, _, err := redislock.TryAcquireAndCheck(ctx, l, []string{"x"}, d, []string{"e9"}); err != nil {
		t.Fatal(err)
	}
	if n := trips.n.Load(); n != 1 {
		t.Fatalf("TryAcquireAndCheck took %d round trips", n)
	}
}
