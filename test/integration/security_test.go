package integration

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/internal/testkit"
)

// TestSecretsStayOutOfLogsAndEndpoints runs a real service with an admin token and a password
// given through a _FILE, uses both, and looks for them in everything the service emits.
func TestSecretsStayOutOfLogsAndEndpoints(t *testing.T) {
	testkit.Integration(t)
	token, password := "tok-"+uuid.NewString(), "pw-"+uuid.NewString()
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := testkit.NewDatabase(t)
	addr := testkit.FreeAddr(t)
	p := testkit.Start(t, "inventory-service", addr, "INVENTORY_HTTP_ADDR="+addr, "INVENTORY_DB_NAME="+db.Database,
		"INVENTORY_CONSUMER_GROUP="+testkit.Name("sec"), "LOG_LEVEL=debug", "ADMIN_TOKEN="+token, "KAFKA_SASL_PASSWORD_FILE="+pwFile)

	get := func(path, auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/api/inventory/SKU-001", ""); code != http.StatusUnauthorized || !strings.Contains(body, "Bearer") {
		t.Errorf("operator endpoint without a token: %d %s", code, body)
	}
	if code, _ := get("/api/inventory/SKU-001", "Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("operator endpoint with a wrong token: %d", code)
	}
	if code, body := get("/api/inventory/SKU-001", "Bearer "+token); code != http.StatusOK {
		t.Errorf("operator endpoint with the token: %d %s", code, body)
	}
	var seen strings.Builder
	for _, path := range []string{"/info", "/health", "/metrics", "/actuator/info"} {
		_, body := get(path, "")
		seen.WriteString(body)
	}
	p.Stop()
	out := p.Output()
	if !strings.Contains(out, `"ADMIN_TOKEN":"(set)"`) || !strings.Contains(out, `"KAFKA_SASL_PASSWORD":"(set)"`) {
		t.Errorf("the start-up configuration does not show the secrets as (set):\n%s", out)
	}
	seen.WriteString(out)
	for name, secret := range map[string]string{"ADMIN_TOKEN": token, "KAFKA_SASL_PASSWORD": password} {
		if strings.Contains(seen.String(), secret) {
			t.Errorf("%s's value appears in the logs or an endpoint", name)
		}
	}
}
