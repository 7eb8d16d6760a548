package testkit

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/orderflow once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		removeStaleBinaries()
		dir, err := os.MkdirTemp("", "orderflow-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "orderflow")
		// With development mode: the e2e suite runs `orderflow dev` too.
		cmd := exec.Command("go", "build", "-tags", "devmode", "-o", binPath, "./cmd/orderflow")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// removeStaleBinaries deletes the binaries earlier test processes built (each is ~40 MB and lives as
// long as its process; none runs for hours — the longest suite's timeout is 60 minutes).
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "orderflow-bin*"))
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && time.Since(fi.ModTime()) > 3*time.Hour {
			_ = os.RemoveAll(d)
		}
	}
}

// FreeAddr returns a free 127.0.0.1 port for a process the test starts (see freePort).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return freePort(t, "127.0.0.1", func(addr string) error {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			_ = l.Close()
		}
		return err
	})
}

// freePort picks a port on ip that bind accepts now and keeps it for the test. The port lies below
// every ephemeral range (they start at 32768), so neither a connection nor a listener on port 0
// can be given it before the process the test starts binds it — a port taken with `:0` and closed
// again can be (a listener of the test, or a process of a test running beside). Tests of other
// packages pick from the same ports: each port picked is locked (flock on a file in the temporary
// directory) until the test ends, so no two running tests pick the same one.
func freePort(t testing.TB, ip string, bind func(addr string) error) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "orderflow-ports")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		port := strconv.Itoa(20000 + rand.N(12000)) //nolint:gosec // a test port, not a secret
		f, err := os.OpenFile(filepath.Join(dir, port), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil { // another test has it
			_ = f.Close()
			continue
		}
		addr := net.JoinHostPort(ip, port)
		if bind(addr) != nil {
			_ = f.Close()
			continue
		}
		t.Cleanup(func() { _ = f.Close() })
		return addr
	}
	t.Fatalf("no free port on %s", ip)
	return ""
}

// Process is a service started from the built binary.
type Process struct {
	Name   string
	Addr   string
	prefix []string // e.g. ip netns exec NAME: how to launch the binary
	env    []string
	cmd    *exec.Cmd
	out    *bytes.Buffer
	mu     *sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// StartWith is Start with a launch prefix (e.g. Netns.Prefix()) and a separate address to check
// readiness on (the service's address as seen from the test).
func StartWith(t testing.TB, prefix []string, sub, readyAddr string, env ...string) *Process {
	t.Helper()
	p := &Process{Name: sub, Addr: readyAddr, prefix: prefix, env: env, out: &bytes.Buffer{}, mu: &sync.Mutex{}}
	p.launch(t)
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", sub, tailString(p.Output(), 4000))
		}
	})
	WaitReady(t, p, readyAddr)
	return p
}

// Start runs `orderflow <sub>` with env (added to the current environment) and waits until addr
// answers /readyz. The process gets SIGTERM at the end of the test; its output is logged on failure.
func Start(t testing.TB, sub, addr string, env ...string) *Process {
	t.Helper()
	return StartWith(t, nil, sub, addr, env...)
}

func (p *Process) launch(t testing.TB) {
	t.Helper()
	args := append(append([]string{}, p.prefix...), Binary(t), p.Name)
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout = lockedWriter{p.mu, p.out}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// Kill sends SIGKILL (no shutdown, no final commit) and reaps the process.
func (p *Process) Kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// Output returns what the process wrote to stdout and stderr so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// State is the exit state after Stop or Kill (nil while running).
func (p *Process) State() *os.ProcessState { return p.cmd.ProcessState }

// Pause freezes the process (SIGSTOP): it holds its connections, locks and partitions but does
// nothing, like a process stuck in a long GC pause or on a starved host.
func (p *Process) Pause() { _ = p.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (p *Process) Resume() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// Restart launches the same command again and waits until it is ready.
func (p *Process) Restart(t testing.TB) {
	t.Helper()
	p.launch(t)
	WaitReady(t, p, p.Addr)
}

// Stop sends SIGTERM and waits for the process to exit.
func (p *Process) Stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot handle SIGTERM
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// probe is the client of readiness checks.
var probe = &http.Client{Timeout: 2 * time.Second}

// WaitReady waits until addr answers /readyz with 200 (another service of process p).
func WaitReady(t testing.TB, p *Process, addr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		// A service holds its port while it waits for its dependencies: bound each probe.
		resp, err := probe.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			p.mu.Lock()
			out := p.out.String()
			p.mu.Unlock()
			t.Fatalf("%s not ready on %s within 60s:\n%s", p.Name, addr, tailString(out, 4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
