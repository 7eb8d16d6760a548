package catalog

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBuiltinCatalog(t *testing.T) {
	items, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	low := 0
	for _, it := range items {
		if it.Stock < 10 {
			low++
		}
	}
	if len(items) < 50 || low == 0 {
		t.Fatalf("catalog has %d items, %d with small stock", len(items), low)
	}
	if _, err := Load("/nonexistent.json"); err == nil {
		t.Fatal("missing catalog file accepted")
	}
}

func TestCatalogFileIsValidated(t *testing.T) {
	for name, body := range map[string]string{"no id": `{"items":[{"name":"x","stock":1}]}`,
		"negative stock": `{"items":[{"itemId":"A","stock":-1}]}`, "too much stock": `{"items":[{"itemId":"A","stock":1000000001}]}`,
		"not JSON": `items: A`} {
		f := filepath.Join(t.TempDir(), "c.json")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(f); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
