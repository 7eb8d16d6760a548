package kafka

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/event"
)

func TestCompressionCodecs(t *testing.T) {
	for name, want := range map[string]kgo.CompressionCodec{"": kgo.NoCompression(), "none": kgo.NoCompression(),
		"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(), "gzip": kgo.GzipCompression()} {
		got, err := Config{Compression: name}.Codec()
		if err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := (Config{Compression: "brotli"}).Codec(); err == nil || !strings.Contains(err.Error(), "brotli") {
		t.Fatalf("unknown codec: %v", err)
	}
}

// The runner's client fetches with the consumer's settings, else the client's, else answers at
// once.
func TestRunnerFetchSettings(t *testing.T) {
	handler := func(context.Context, []event.Envelope) error { return nil }
	for _, c := range []struct {
		cfg      Config
		rc       RunnerConfig
		minBytes int32
		maxWait  time.Duration
	}{
		{Config{}, RunnerConfig{}, 1, 500 * time.Millisecond},
		{Config{FetchMinBytes: 1 << 20, FetchMaxWait: 20 * time.Millisecond}, RunnerConfig{}, 1 << 20, 20 * time.Millisecond},
		{Config{FetchMinBytes: 1 << 20, FetchMaxWait: 20 * time.Millisecond}, RunnerConfig{FetchMinBytes: 64 << 10, FetchMaxWait: time.Second},
			64 << 10, time.Second},
	} {
		c.cfg.Brokers = []string{"127.0.0.1:1"} // never dialled: the client connects on first use
		rc := c.rc
		rc.Group, rc.Topics, rc.Handler = "g", []string{"t"}, handler
		rc.Log, rc.Metrics = slog.New(slog.DiscardHandler), NewRunnerMetrics(prometheus.NewRegistry())
		r, err := NewRunner(c.cfg, rc)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.Client().OptValue(kgo.FetchMinBytes), c.minBytes; got != want {
			t.Errorf("%+v: fetch min bytes %v, want %v", c.cfg, got, want)
		}
		if got, want := r.Client().OptValue(kgo.FetchMaxWait), c.maxWait; got != want {
			t.Errorf("%+v: fetch max wait %v, want %v", c.cfg, got, want)
		}
		r.Close()
	}
}
