// Package version carries build metadata injected at link time:
//
//	go build -ldflags "-X github.com/orderflow/orderflow/internal/version.Version=v1.2.3 ..."
package version

// Set by -ldflags -X; the defaults mark a development build.
var (
	Version   = "dev"
	Commit    = "unknown"
	BuildTime = "unknown"
)
