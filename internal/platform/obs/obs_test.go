package obs

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestLogFormats: json is one object a line with the service; text is one readable line with the
// service before the message and no colour codes off a terminal; auto is json off a terminal.
func TestLogFormats(t *testing.T) {
	for _, format := range []string{"json", "auto"} {
		var b bytes.Buffer
		NewLogger(&b, "order-service", "info", format).Info("started", "addr", "127.0.0.1:8081")
		var m map[string]any
		if err := json.Unmarshal(b.Bytes(), &m); err != nil || m["service"] != "order-service" || m["msg"] != "started" {
			t.Errorf("%s: %q (%v)", format, b.String(), err)
		}
	}
	var b bytes.Buffer
	log := NewLogger(&b, "query-api", "info", "text")
	log.With("orderId", "o-1").Warn("read model unavailable")
	log.Debug("not shown at info")
	line := b.String()
	if strings.Count(line, "\n") != 1 || !strings.Contains(line, "WRN query-api") || !strings.Contains(line, "read model unavailable") ||
		!strings.Contains(line, "orderId=o-1") || strings.Contains(line, "\x1b[") {
		t.Errorf("text line %q", line)
	}
}
