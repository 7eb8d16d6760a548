package testkit

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// The ports FreeAddr hands out lie below the ephemeral range, differ within a test, can be bound,
// and are locked against other tests until this one ends.
func TestFreeAddrPorts(t *testing.T) {
	seen := map[string]bool{}
	for range 40 {
		addr := FreeAddr(t)
		host, port, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		if host != "127.0.0.1" || n < 1024 || n >= 32768 || seen[port] {
			t.Fatalf("FreeAddr gave %s (seen before: %v); want a new 127.0.0.1 port below 32768", addr, seen[port])
		}
		seen[port] = true
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		_ = l.Close()
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "orderflow-ports", port), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			t.Fatalf("port %s is not locked while the test holds it", port)
		}
		_ = f.Close()
	}
}
