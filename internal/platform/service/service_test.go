package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunBindsBeforeWiring: a port in use fails at once, before any dependency is waited for, and
// the port is held while wire runs, so a request made then is answered once the service is up.
func TestRunBindsBeforeWiring(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	wired := false
	err = Run(context.Background(), "svc", io.Discard, Common{}, busy.Addr().String(), func(context.Context, *Service) error {
		wired = true
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "listen") || wired {
		t.Fatalf("port in use: err %v, wire called %v", err, wired)
	}

	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inWire, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, "svc", io.Discard, Common{}, addr, func(context.Context, *Service) error {
			close(inWire)
			<-release
			return nil
		})
	}()
	<-inWire
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatal("the port is not held while wire runs")
	}
	answered := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/healthz", addr))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		answered <- err
	}()
	close(release)
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("request made while wiring: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request made while wiring was not answered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestLoopbackOnly: the ADMIN_TOKEN warning is for listeners others can reach.
func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.5:80": false, "garbage": false} {
		if got := loopbackOnly(addr); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
}
