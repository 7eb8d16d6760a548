package service

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/platform/cass"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/pg"
	"github.com/orderflow/orderflow/internal/platform/redislock"
	"github.com/orderflow/orderflow/internal/testkit"
)

// engines is what the services read about their servers.
type engines struct {
	Common
	Postgres  pg.Config
	Redis     redislock.Config
	Cassandra cass.Config
}

func common(t *testing.T, env map[string]string) (engines, error) {
	t.Helper()
	e := config.New(func(k string) string { return env[k] })
	c := engines{LoadCommon(e), LoadPostgres(e), LoadRedis(e), LoadCassandra(e)}
	return c, e.Err()
}

// TestKafkaOverTLSWithSCRAM: the services' Kafka options reach a broker that requires TLS and
// SCRAM-SHA-512 (franz-go's kfake), and fail without the right password or without TLS.
func TestKafkaOverTLSWithSCRAM(t *testing.T) {
	serverTLS, caFile := testkit.PKI(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "orderflow", "s3cret"), kfake.SeedTopics(1, "secured"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	env := map[string]string{"KAFKA_BROKERS": cluster.ListenAddrs()[0], "KAFKA_TLS_ENABLE": "true", "KAFKA_TLS_CA_FILE": caFile,
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "orderflow", "KAFKA_SASL_PASSWORD": "s3cret"}
	produce := func(env map[string]string) error {
		c, err := common(t, env)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(c.Kafka.Options(kgo.RequestRetries(0), kgo.RetryTimeout(2*time.Second))...)
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Topic: "secured", Value: []byte("x")}).FirstErr()
	}
	if err := produce(env); err != nil {
		t.Fatalf("TLS + SCRAM: %v", err)
	}
	wrong := map[string]string{}
	for k, v := range env {
		wrong[k] = v
	}
	wrong["KAFKA_SASL_PASSWORD"] = "nope"
	if err := produce(wrong); err == nil {
		t.Error("a wrong SCRAM password was accepted")
	}
	delete(wrong, "KAFKA_TLS_ENABLE")
	delete(wrong, "KAFKA_TLS_CA_FILE")
	wrong["KAFKA_SASL_PASSWORD"] = "s3cret"
	if err := produce(wrong); err == nil {
		t.Error("a plaintext connection to a TLS listener succeeded")
	}
}

// TestRedisOverTLSWithACLUser: the payment service's Redis client reaches a TLS server with an
// ACL user and password (miniredis), and is refused with a wrong password.
func TestRedisOverTLSWithACLUser(t *testing.T) {
	serverTLS, caFile := testkit.PKI(t)
	m := miniredis.NewMiniRedis()
	m.RequireUserAuth("payments", "s3cret")
	if err := m.StartTLS(serverTLS); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ping := func(pass string) error {
		c, err := common(t, map[string]string{"REDIS_ADDR": m.Addr(), "REDIS_TLS_ENABLE": "true", "REDIS_TLS_CA_FILE": caFile,
			"REDIS_USERNAME": "payments", "REDIS_PASSWORD": pass})
		if err != nil {
			t.Fatal(err)
		}
		cl := redislock.NewClient(c.Redis)
		defer func() { _ = cl.Close() }()
		return cl.Ping(context.Background()).Err()
	}
	if err := ping("s3cret"); err != nil {
		t.Fatalf("TLS + ACL user: %v", err)
	}
	if err := ping("nope"); err == nil {
		t.Error("a wrong Redis password was accepted")
	}
}

func TestSecureConnectionSettings(t *testing.T) {
	_, caFile := testkit.PKI(t)
	c, err := common(t, map[string]string{"CASSANDRA_TLS_ENABLE": "true", "CASSANDRA_TLS_CA_FILE": caFile,
		"POSTGRES_SSLMODE": "verify-full", "POSTGRES_SSLROOTCERT": caFile})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cassandra.TLS == nil || c.Cassandra.TLS.RootCAs == nil {
		t.Error("Cassandra TLS not configured")
	}
	if u := c.Postgres.URL("db"); !strings.Contains(u, "sslmode=verify-full") || !strings.Contains(u, "sslrootcert=") {
		t.Errorf("Postgres URL %s lacks the TLS settings", c.Postgres.Redacted())
	}
	for name, env := range map[string]map[string]string{
		"CA file without TLS": {"KAFKA_TLS_CA_FILE": caFile},
		"unreadable CA":       {"REDIS_TLS_ENABLE": "true", "REDIS_TLS_CA_FILE": "/nonexistent.pem"},
		"certificate, no key": {"CASSANDRA_TLS_ENABLE": "true", "CASSANDRA_TLS_CERT_FILE": caFile},
		"unknown SASL":        {"KAFKA_SASL_MECHANISM": "GSSAPI"},
		"not a PEM CA":        {"KAFKA_TLS_ENABLE": "true", "KAFKA_TLS_CA_FILE": "/etc/hostname"},
		"unverified Postgres": {"POSTGRES_SSLMODE": "require"},
		"verify-ca Postgres":  {"POSTGRES_SSLMODE": "verify-ca", "POSTGRES_SSLROOTCERT": caFile},
		"CA with TLS off":     {"POSTGRES_SSLMODE": "disable", "POSTGRES_SSLROOTCERT": caFile},
		"unknown sslmode":     {"POSTGRES_SSLMODE": "on"},
	} {
		if _, err := common(t, env); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A CA alone means full verification; an unverified mode only when allowed by name.
	if c, err := common(t, map[string]string{"POSTGRES_SSLROOTCERT": caFile}); err != nil || c.Postgres.SSLMode != "verify-full" {
		t.Errorf("a CA file without a mode: %q %v, want verify-full", c.Postgres.SSLMode, err)
	}
	if c, err := common(t, map[string]string{"POSTGRES_SSLMODE": "require", "POSTGRES_SSL_ALLOW_UNVERIFIED": "true"}); err != nil || !c.Postgres.Unverified() {
		t.Errorf("require, allowed by name: %v (unverified %v)", err, c.Postgres.Unverified())
	}
	// Defaults stay plain loopback.
	if c, err := common(t, nil); err != nil || c.Postgres.SSLMode != "disable" || c.Kafka.TLS != nil || c.Kafka.SASL != nil || c.Redis.TLS != nil || c.Cassandra.TLS != nil {
		t.Errorf("defaults are not plaintext: %v", err)
	}
}

// TestUnverifiedPostgresIsLoud: a service opening Postgres with an allowed unverified sslmode says
// so in its log; a verifying one does not.
func TestUnverifiedPostgresIsLoud(t *testing.T) {
	for mode, warn := range map[string]bool{"require": true, "disable": false} {
		c, err := common(t, map[string]string{"POSTGRES_SSLMODE": mode, "POSTGRES_SSL_ALLOW_UNVERIFIED": "true"})
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		s, err := New("svc", &out, c.Common)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _ = s.Postgres(ctx, c.Postgres) // connecting is not the point: the warning comes first
		if got := strings.Contains(out.String(), "does not verify the Postgres server"); got != warn {
			t.Errorf("sslmode %s: warning logged %v, want %v:\n%s", mode, got, warn, out.String())
		}
	}
}
