// Package catalog is the item catalog: what inventory-service seeds its stock from and what the
// tracking page (query-api) offers. It is its own package so that no service imports another.
package catalog

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
)

//go:embed catalog.json
var builtin embed.FS

// Item is one entry of a catalog file ({"items":[...]}).
type Item struct {
	ItemID string `json:"itemId"`
	Name   string `json:"name"`
	Stock  int    `json:"stock"`
}

// MaxStock is the largest stock level of one item (the stock API's limit too; fits int32).
const MaxStock = 1_000_000_000

// Load reads the catalog file at path, or the built-in catalog when path is "".
func Load(path string) ([]Item, error) {
	var b []byte
	var err error
	if path == "" {
		b, err = fs.ReadFile(builtin, "catalog.json")
	} else {
		b, err = os.ReadFile(path) //nolint:gosec // the operator names the catalog file
	}
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	var c struct{ Items []Item }
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse catalog %s: %w", path, err)
	}
	for _, it := range c.Items {
		if it.ItemID == "" || it.Stock < 0 || it.Stock > MaxStock {
			return nil, fmt.Errorf("catalog %s: item %q needs an itemId and a stock from 0 to %d", path, it.ItemID, MaxStock)
		}
	}
	return c.Items, nil
}
