package kafka

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
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
