// Package redislock holds payment-service's Redis layers: an owner-checked lock and a dedup cache,
// plus the client set-up and health check. Both degrade: callers treat Redis errors as "layer
// unavailable" and fall back to the database constraint.
package redislock

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config locates the Redis server.
type Config struct {
	Addr     string
	Username string // Redis 6+ ACL user; empty: the default user
	Password string // secret
	DB       int
	TLS      *tls.Config // nil: plaintext
}

// NewClient returns a go-redis client with short timeouts, so an outage costs each caller
// milliseconds, not seconds. It connects lazily: Redis being down at start-up is not fatal.
func NewClient(c Config) *redis.Client {
	var t *tls.Config
	if c.TLS != nil {
		t = c.TLS.Clone()
	}
	return redis.NewClient(&redis.Options{Addr: c.Addr, Username: c.Username, Password: c.Password, DB: c.DB, TLSConfig: t,
		DialTimeout: time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		MaxRetries: 1, PoolSize: 20})
}

// Check is a health check: PING.
func Check(c *redis.Client) func(ctx context.Context) (map[string]any, error) {
	return func(ctx context.Context) (map[string]any, error) {
		if err := c.Ping(ctx).Err(); err != nil {
			return map[string]any{"addr": c.Options().Addr}, err
		}
		return map[string]any{"addr": c.Options().Addr}, nil
	}
}

// ErrNotAcquired: the lock was held by someone else for the whole wait.
var ErrNotAcquired = errors.New("lock not acquired within the wait")

// Locker takes per-key locks with SET NX PX and a random owner token.
type Locker struct {
	Client *redis.Client
	Prefix string        // key prefix, e.g. "payment-lock:order:"
	TTL    time.Duration // lock expiry, default 30s: a crashed owner's lock frees itself
	Wait   time.Duration // how long Acquire waits for a held lock, default 5s
}

// Lock is a held lock; Release frees it only if it is still ours.
type Lock struct {
	l     *Locker
	key   string
	token string
}

// Acquire waits up to Wait for the lock on id. It returns ErrNotAcquired when another owner held it
// throughout, or the Redis error when Redis is unreachable (callers then continue without the lock).
func (l *Locker) Acquire(ctx context.Context, id string) (*Lock, error) {
	ttl, wait := l.ttl(), l.Wait
	if wait <= 0 {
		wait = 5 * time.Second
	}
	lk := l.newLock(id)
	deadline := time.Now().Add(wait)
	delay := 5 * time.Millisecond
	for {
		ok, err := l.Client.SetNX(ctx, lk.key, lk.token, ttl).Result()
		if err != nil {
			return nil, fmt.Errorf("acquire %s: %w", lk.key, err)
		}
		if ok {
			return lk, nil
		}
		if time.Now().Add(delay).After(deadline) {
			return nil, ErrNotAcquired
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// newLock returns the (not yet taken) lock of id with a fresh random owner token.
func (l *Locker) newLock(id string) *Lock {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return &Lock{l: l, key: l.Prefix + id, token: hex.EncodeToString(b[:])}
}

// ttl is the lock expiry, 30 s by default.
func (l *Locker) ttl() time.Duration {
	if l.TTL <= 0 {
		return 30 * time.Second
	}
	return l.TTL
}

// releaseScript deletes the key only when it still holds our token (compare-and-delete), so an
// owner whose lock expired cannot delete the lock a new owner holds.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)

// Release frees the lock if it is still ours; it reports whether it was.
func (lk *Lock) Release(ctx context.Context) (bool, error) {
	n, err := releaseScript.Run(ctx, lk.l.Client, []string{lk.key}, lk.token).Int()
	if err != nil {
		return false, fmt.Errorf("release %s: %w", lk.key, err)
	}
	return n == 1, nil
}

// Dedup is the fast-path duplicate cache: a key per processed event id.
type Dedup struct {
	Client *redis.Client
	Prefix string        // e.g. "payment:dedup:"
	TTL    time.Duration // default 24h
}

// Seen reports whether id was marked. A Redis error is returned as is (callers treat it as a miss).
func (d *Dedup) Seen(ctx context.Context, id string) (bool, error) {
	n, err := d.Client.Exists(ctx, d.Prefix+id).Result()
	return n == 1, err
}

// Mark records id for TTL. Call it only after the effect committed.
func (d *Dedup) Mark(ctx context.Context, id string) error {
	return d.Client.Set(ctx, d.Prefix+id, "1", d.ttl()).Err()
}

// ttl is how long a mark lives, 24 h by default.
func (d *Dedup) ttl() time.Duration {
	if d.TTL <= 0 {
		return 24 * time.Hour
	}
	return d.TTL
}

// TryAcquireMany tries once, in one round trip, to take the lock of every id; locks[i] is nil where
// another owner holds id's lock. On a Redis error no lock is held (any taken are released).
func (l *Locker) TryAcquireMany(ctx context.Context, ids []string) ([]*Lock, error) {
	locks, _, err := TryAcquireAndCheck(ctx, l, ids, nil, nil)
	return locks, err
}

// TryAcquireAndCheck is TryAcquireMany for lockIDs and, in the same round trip, Seen for each of
// eventIDs (d may be nil). Redis runs a pipeline in order, so the marks are read after the locks
// were taken: for the events whose lock was taken the answer is as fresh as a check under the lock.
func TryAcquireAndCheck(ctx context.Context, l *Locker, lockIDs []string, d *Dedup, eventIDs []string) ([]*Lock, []bool, error) {
	locks := make([]*Lock, len(lockIDs))
	taken := make([]*redis.BoolCmd, len(lockIDs))
	var marks []*redis.IntCmd
	_, err := l.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range lockIDs {
			locks[i] = l.newLock(id)
			taken[i] = p.SetNX(ctx, locks[i].key, locks[i].token, l.ttl())
		}
		if d != nil {
			marks = d.queueSeen(ctx, p, eventIDs)
		}
		return nil
	})
	if err != nil {
		_ = l.ReleaseMany(context.WithoutCancel(ctx), locks)
		return nil, nil, fmt.Errorf("acquire %d locks: %w", len(lockIDs), err)
	}
	for i, c := range taken {
		if !c.Val() {
			locks[i] = nil
		}
	}
	return locks, seenOf(marks), nil
}

// ReleaseMany releases the non-nil locks (each only if still ours) in one round trip.
func (l *Locker) ReleaseMany(ctx context.Context, locks []*Lock) error {
	return MarkAndRelease(ctx, nil, nil, l, locks)
}

// MarkAndRelease is Mark for each of ids (d may be nil; call it only after the effects committed)
// and then ReleaseMany for locks, in one round trip: the marks are written before the locks go.
func MarkAndRelease(ctx context.Context, d *Dedup, ids []string, l *Locker, locks []*Lock) error {
	_, err := l.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		if d != nil {
			d.queueMark(ctx, p, ids)
		}
		for _, lk := range locks {
			if lk != nil {
				releaseScript.Eval(ctx, p, []string{lk.key}, lk.token) // EVALSHA cannot fall back inside a pipeline
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark %d events and release locks: %w", len(ids), err)
	}
	return nil
}

func (d *Dedup) queueSeen(ctx context.Context, p redis.Pipeliner, ids []string) []*redis.IntCmd {
	cmds := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		cmds[i] = p.Exists(ctx, d.Prefix+id)
	}
	return cmds
}

func seenOf(cmds []*redis.IntCmd) []bool {
	seen := make([]bool, len(cmds))
	for i, c := range cmds {
		seen[i] = c.Val() == 1
	}
	return seen
}

func (d *Dedup) queueMark(ctx context.Context, p redis.Pipeliner, ids []string) {
	for _, id := range ids {
		p.Set(ctx, d.Prefix+id, "1", d.ttl())
	}
}
