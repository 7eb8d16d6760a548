package payment

import (
	"time"

	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/redislock"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// Name is the service name used in logs, metrics (application label) and the envelope's producer.
const Name = "payment-service"

// Config is payment-service's configuration; Configure documents every variable and its default.
type Config struct {
	service.Common
	Postgres    pg.Config
	Redis       redislock.Config
	Group       string
	LockPrefix  string
	LockTTL     time.Duration
	LockWait    time.Duration
	DedupPrefix string
	DedupTTL    time.Duration
	Gateway     Gateway
}

// Configure reads every variable of the service from e (which records them for the generated
// documentation); errors accumulate in e.
func Configure(e *config.Env) Config {
	c := Config{Common: service.LoadCommon(e)}
	c.HTTPAddr = e.String("PAYMENT_HTTP_ADDR", "127.0.0.1:8082", "Listen address of payment-service.")
	c.OpsAddr = service.OpsAddr(e, "PAYMENT", Name)
	c.Postgres = service.LoadPostgres(e)
	c.Redis = service.LoadRedis(e)
	c.Postgres.Database = e.String("PAYMENT_DB_NAME", "delivery_eta", "Postgres database owned by payment-service (created if missing).")
	c.Group = e.String("PAYMENT_CONSUMER_GROUP", event.GroupPayment, "Kafka consumer group. Committed offsets belong to it: change it only on purpose (tests use a fresh one).")
	c.LockPrefix = e.String("PAYMENT_LOCK_PREFIX", "payment-lock:order:", "Redis key prefix of the per-order lock (layer 1).")
	c.LockTTL = e.Duration("PAYMENT_LOCK_TTL", 30*time.Second, "Expiry of the per-order lock; frees the lock of a crashed owner.")
	c.LockWait = e.Duration("PAYMENT_LOCK_WAIT", 5*time.Second, "How long to wait for a held lock before retrying the event later.")
	c.DedupPrefix = e.String("PAYMENT_DEDUP_PREFIX", "payment:dedup:", "Redis key prefix of the processed-event cache (layer 2).")
	c.DedupTTL = e.Duration("PAYMENT_DEDUP_TTL", 24*time.Hour, "Lifetime of a processed-event cache entry.")
	limit := e.String("PAYMENT_AMOUNT_LIMIT", "5000.00", "Gateway declines amounts above this (AMOUNT_LIMIT_EXCEEDED).")
	m, err := event.NewMoney(limit)
	e.Check(err == nil && m.Sign() > 0, "PAYMENT_AMOUNT_LIMIT=%q must be a positive amount with at most 2 decimals", limit)
	c.Gateway.AmountLimit = m
	c.Gateway.DeclineCustomers = e.List("PAYMENT_DECLINE_CUSTOMERS", "", "Comma-separated customerIds the gateway always declines (CUSTOMER_DECLINED).")
	rate := e.Int("PAYMENT_DECLINE_PERCENT", 0, "Percentage of orders declined, chosen by a hash of the orderId (GATEWAY_DECLINED); 0 to 100.")
	e.Check(rate >= 0 && rate <= 100, "PAYMENT_DECLINE_PERCENT must be between 0 and 100")
	c.Gateway.DeclineRate = float64(rate) / 100
	c.Gateway.Latency = e.Duration("PAYMENT_GATEWAY_LATENCY", 0, "Simulated gateway processing time per payment.")
	e.Check(c.LockTTL > c.LockWait && c.LockWait > 0, "PAYMENT_LOCK_TTL must exceed PAYMENT_LOCK_WAIT, both positive")
	e.Check(c.DedupTTL > 0, "PAYMENT_DEDUP_TTL must be positive")
	return c
}
