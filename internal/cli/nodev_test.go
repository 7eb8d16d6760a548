//go:build !devmode

package cli

import (
	"context"
	"errors"
	"io"
	"testing"
)

// TestProductionBuildRefusesDev: without the devmode tag, `orderflow dev` says how to get it.
func TestProductionBuildRefusesDev(t *testing.T) {
	err := Run(context.Background(), []string{"dev"}, func(string) string { return "" }, io.Discard, io.Discard)
	if !errors.Is(err, errNoDevMode) {
		t.Fatalf("orderflow dev in a production build: %v", err)
	}
}
