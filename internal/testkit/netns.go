package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace the test created for one service: the service runs inside it,
// its dependencies are reached through forwarders the test runs, and faults (iptables) are applied
// only inside it, never to the machine's own networking.
type Netns struct {
	Name  string
	mu    sync.Mutex
	delay map[string][2]time.Duration // forwarded address → base delay, jitter
}

// NewNetns creates a namespace with its loopback up; it is deleted at the end of the test.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	n := &Netns{Name: Name("ofns"), delay: map[string][2]time.Duration{}}
	for _, args := range [][]string{{"netns", "add", n.Name}, {"netns", "exec", n.Name, "ip", "link", "set", "lo", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	return n
}

// Veth links the namespace to the host with a veth pair on a private /24 and returns the
// namespace's address and hosts addresses of the host's end: a connection from the host to nsIP,
// made from one of hostIPs, arrives from a non-loopback address, as if from another machine.
// Nothing outside this machine can reach either end.
func (n *Netns) Veth(t testing.TB, hosts int) (nsIP string, hostIPs []string) {
	t.Helper()
	suffix := n.Name[len(n.Name)-6:]
	host, inner := "ofh"+suffix, "ofn"+suffix
	net24 := fmt.Sprintf("10.213.%d", rand.N(250)+1) //nolint:gosec // a test subnet, not a secret
	nsIP = net24 + ".2"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("link", "add", host, "type", "veth", "peer", "name", inner)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run("link", "set", inner, "netns", n.Name)
	for i := range hosts {
		ip := fmt.Sprintf("%s.%d", net24, 10+i)
		run("addr", "add", ip+"/24", "dev", host)
		hostIPs = append(hostIPs, ip)
	}
	run("link", "set", host, "up")
	run("netns", "exec", n.Name, "ip", "addr", "add", nsIP+"/24", "dev", inner)
	run("netns", "exec", n.Name, "ip", "link", "set", inner, "up")
	return nsIP, hostIPs
}

// Exec runs a command inside the namespace (e.g. iptables).
func (n *Netns) Exec(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %v: %v\n%s", n.Name, args, err, out)
	}
}

// FreeAddr returns ip:port free inside the namespace (see freePort): a port below the ephemeral
// range is never one a process of the namespace was given for a connection, still open or left in
// TIME_WAIT by an earlier process (a listener cannot bind over it), which a port chosen on the host
// can be.
func (n *Netns) FreeAddr(t testing.TB, ip string) string {
	t.Helper()
	return freePort(t, ip, func(addr string) error {
		return n.inside(func() error {
			l, err := net.Listen("tcp", addr)
			if err == nil {
				_ = l.Close()
			}
			return err
		})
	})
}

// Prefix is the command prefix that runs a program inside the namespace.
func (n *Netns) Prefix() []string { return []string{"ip", "netns", "exec", n.Name} }

// inside runs fn on an OS thread switched into the namespace; sockets fn creates belong to it.
func (n *Netns) inside(fn func() error) error {
	f, err := os.Open("/var/run/netns/" + n.Name)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	errc := make(chan error, 1)
	go func() {
		// A thread that was switched is never given back to the Go scheduler if switching back fails.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer func() { _ = orig.Close() }()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("back to the host namespace: %w", err)
			return // the thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ForwardInto makes addr (127.0.0.1:port inside the namespace) reach the same address on the
// host: the service inside uses its usual addresses, the bytes flow through the test.
func (n *Netns) ForwardInto(t testing.TB, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		var l net.Listener
		if err := n.inside(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
			t.Fatalf("listen on %s inside %s: %v", addr, n.Name, err)
		}
		t.Cleanup(func() { _ = l.Close() })
		go serve(l, func() (net.Conn, error) { return net.Dial("tcp", addr) }, func() time.Duration { return n.delayOf(addr) })
	}
}

// Delay makes every chunk of data forwarded to or from addr wait base ± jitter (0 removes it).
// The kernel here has no netem qdisc, so latency is added where the namespace's traffic already
// passes: in its forwarders. Loss and partitions stay kernel-level (iptables).
func (n *Netns) Delay(addr string, base, jitter time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delay[addr] = [2]time.Duration{base, jitter}
}

func (n *Netns) delayOf(addr string) time.Duration {
	n.mu.Lock()
	d := n.delay[addr]
	n.mu.Unlock()
	if d[0] <= 0 {
		return 0
	}
	if d[1] <= 0 {
		return d[0]
	}
	return d[0] - d[1] + rand.N(2*d[1]) //nolint:gosec // simulated network jitter
}

// ForwardOut returns a host address that reaches addr inside the namespace (the service's HTTP).
func (n *Netns) ForwardOut(t testing.TB, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go serve(l, func() (c net.Conn, err error) {
		err = n.inside(func() (err error) { c, err = net.Dial("tcp", addr); return err })
		return c, err
	}, func() time.Duration { return 0 })
	return l.Addr().String()
}

func serve(l net.Listener, dial func() (net.Conn, error), delay func() time.Duration) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			out, err := dial()
			if err != nil {
				_ = in.Close()
				return
			}
			var wg sync.WaitGroup
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					k, err := src.Read(buf)
					if k > 0 {
						if d := delay(); d > 0 {
							time.Sleep(d)
						}
						if _, werr := dst.Write(buf[:k]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
			}
			wg.Add(2)
			go pipe(out, in)
			go pipe(in, out)
			wg.Wait()
			_ = in.Close()
			_ = out.Close()
		}()
	}
}

// NetnsUnavailable says why this machine cannot make namespaces and iptables rules ("" if it can).
func NetnsUnavailable() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed (scripts/infra up installs iptables)"
		}
	}
	return ""
}
