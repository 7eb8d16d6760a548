// Package redislock holds payment-service's Redis layers: the owner-checked lock and the dedup cache,
// plus the client set-up and health check.
package redislock

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Config locates the Redis server.
type Config struct {
	Addr     string
	Password string // secret
	DB       int
}

// NewClient returns a go-redis client; it connects lazily, so a Redis outage at start-up is not fatal.
func NewClient(c Config) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: c.Addr, Password: c.Password, DB: c.DB})
}

// Check is a health check: PING.
func Check(c *redis.Client) func(ctx context.Context) (map[string]any, error) {
	return func(ctx context.Context) (map[string]any, error) {
		if err := c.Ping(ctx).Err(); err != nil {
			return nil, err
		}
		return map[string]any{"addr": c.Options().Addr}, nil
	}
}
