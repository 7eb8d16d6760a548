package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/internal/testkit"
)

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	ctx := context.Background()
	if err := Run(ctx, []string{"probe", srv.URL + "/readyz"}, func(string) string { return "" }, &out, &errb); err != nil {
		t.Fatalf("ready endpoint: %v", err)
	}
	if err := Run(ctx, []string{"probe", srv.URL + "/other"}, func(string) string { return "" }, &out, &errb); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("503 endpoint: %v", err)
	}
	if err := Run(ctx, []string{"probe", "file:///etc/passwd"}, func(string) string { return "" }, &out, &errb); err == nil {
		t.Fatal("a non-http URL was probed")
	}
	if err := Run(ctx, []string{"probe"}, func(string) string { return "" }, &out, &errb); err != ErrUsage {
		t.Fatalf("probe without URL: %v", err)
	}
}

func TestInitCreatesDatabasesAndTopics(t *testing.T) {
	testkit.Integration(t)
	ctx := testkit.Context(t, 60*time.Second)
	names := map[string]string{}
	for _, p := range []string{"ORDER", "INVENTORY", "PAYMENT", "DELIVERY"} {
		names[p+"_DB_NAME"] = testkit.Name("init_" + strings.ToLower(p))
	}
	env := func(k string) string { return names[k] }
	var out, errb bytes.Buffer
	if err := Run(ctx, []string{"init"}, env, &out, &errb); err != nil {
		t.Fatalf("init: %v %s", err, errb.String())
	}
	conn, err := pgx.Connect(ctx, testkit.PGConfig().URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, db := range names {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&ok); err != nil || !ok {
			t.Errorf("database %s not created (%v)", db, err)
		}
		t.Cleanup(func() { // after conn is closed: a connection of its own
			if c, err := pgx.Connect(context.Background(), testkit.PGConfig().URL("postgres")); err == nil {
				_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize())
				_ = c.Close(context.Background())
			}
		})
	}
	if !strings.Contains(out.String(), "topics ready: raw.order-events") {
		t.Errorf("init output %q", out.String())
	}
	// Idempotent: a second run finds everything in place.
	if err := Run(ctx, []string{"init"}, env, &out, &errb); err != nil {
		t.Fatalf("second init: %v", err)
	}
}
