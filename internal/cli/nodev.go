//go:build !devmode

package cli

import (
	"context"
	"errors"
	"io"
)

// errNoDevMode: this is the production build, without the embedded servers of `orderflow dev`.
var errNoDevMode = errors.New("this orderflow is a production build without development mode: build it with `make build` " +
	"(go build -tags devmode ./cmd/orderflow), or run the services against real servers (make run-native)")

func runDev(context.Context, func(string) string, io.Writer) error { return errNoDevMode }
