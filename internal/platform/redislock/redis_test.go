package redislock_test

import (
	"errors"
	"testing"
	"time"

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

// The pipelined forms: TryAcquireMany takes the free locks and reports the held one as nil without
// waiting, ReleaseMany frees only its own, SeenMany/MarkMany agree with Seen/Mark.
func TestManyAtOnce(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 30*time.Second)
	c := testkit.Redis(t)
	l := &redislock.Locker{Client: c, Prefix: testkit.Name("lock") + ":", TTL: time.Minute}
	foreign, err := l.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	locks, err := l.TryAcquireMany(ctx, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if locks[0] == nil || locks[1] != nil || locks[2] == nil {
		t.Fatalf("locks %v: want a and c taken, b (held elsewhere) nil", locks)
	}
	if ttl := c.PTTL(ctx, l.Prefix+"a").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("lock ttl %v", ttl)
	}
	if err := l.ReleaseMany(ctx, locks); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, l.Prefix+"a", l.Prefix+"c").Val(); n != 0 {
		t.Fatalf("%d of our locks left after ReleaseMany", n)
	}
	if ok, _ := foreign.Release(ctx); !ok {
		t.Fatal("ReleaseMany freed a lock it did not own")
	}

	d := &redislock.Dedup{Client: c, Prefix: testkit.Name("dedup") + ":", TTL: time.Minute}
	if err := d.MarkMany(ctx, []string{"e1", "e3"}); err != nil {
		t.Fatal(err)
	}
	seen, err := d.SeenMany(ctx, []string{"e1", "e2", "e3"})
	if err != nil || !seen[0] || seen[1] || !seen[2] {
		t.Fatalf("seen %v, %v; want e1 and e3", seen, err)
	}
	if one, _ := d.Seen(ctx, "e3"); !one {
		t.Fatal("Seen disagrees with MarkMany")
	}
}
