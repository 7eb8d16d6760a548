// Package service is the skeleton every orderflow service runs in: logger, metrics registry, health,
// the operational HTTP endpoints, and a lifecycle group with ordered graceful shutdown.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/httpx"
	"github.com/orderflow/orderflow/internal/platform/kafka"
	"github.com/orderflow/orderflow/internal/platform/lifecycle"
	"github.com/orderflow/orderflow/internal/platform/obs"
	"github.com/orderflow/orderflow/internal/version"
)

// Service bundles what a service's Run wires its components into.
type Service struct {
	Name     string
	Log      *slog.Logger
	Reg      prometheus.Registerer // adds application=<Name>
	Gatherer *prometheus.Registry
	Health   *httpx.Health
	Mux      *httpx.Mux // API routes, each with its Access; the ops endpoints are already registered unless on an ops port
	// PageTokens seals list cursors for clients, keyed by ADMIN_TOKEN so every replica opens
	// every other's tokens.
	PageTokens *httpx.PageTokens
	Group      *lifecycle.Group
	// Tracing is the service's tracer provider, nil when tracing is off (obs.TraceConfig).
	Tracing        *obs.Tracing
	closers        []func()
	onHTTPShutdown []func()
	ops            *httpx.Mux // the ops endpoints when served on their own port (Common.OpsAddr), else nil
	opsAddr        string
	opsLn          net.Listener // bound by Run before wire, like the API's port

	kafka      kafka.Config
	consumer   *kafka.RunnerConfig
	relay      *relaySpec
	inboxKeep  time.Duration // the inbox's retention (Inbox), checked against the consumed topics'
	adminToken bool          // ADMIN_TOKEN is set
}

// loopbackOnly reports whether addr (host:port) accepts loopback connections only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// New builds the skeleton for service name, logging to stdout in c.LogFormat.
func New(name string, stdout io.Writer, c Common) (*Service, error) {
	if c.Guard.DistrustLoopback && c.Guard.AdminToken == "" {
		return nil, errors.New("ADMIN_TOKEN (or ADMIN_TOKEN_FILE) is required when loopback clients are not trusted (TRUST_LOOPBACK=false, the default in Kubernetes): behind a sidecar proxy every request arrives from loopback")
	}
	log := obs.NewLogger(stdout, name, c.LogLevel, c.LogFormat)
	tracing, err := obs.NewTracing(name, version.Version, c.Tracing)
	if err != nil {
		return nil, err
	}
	reg, gatherer := obs.NewRegistry(name)
	s := &Service{
		Name: name, Log: log, Reg: reg, Gatherer: gatherer,
		Health: httpx.NewHealth(), Mux: httpx.NewMux(c.Guard),
		PageTokens: httpx.NewPageTokens(c.Guard.AdminToken), adminToken: c.Guard.AdminToken != "", kafka: c.Kafka,
		Tracing: tracing,
	}
	if tracing != nil {
		log.Info("tracing on", "endpoint", c.Tracing.Endpoint, "sampler", c.Tracing.Sampler, "ratio", c.Tracing.SamplerArg)
		s.OnClose(func() { // last: after every component stopped, what they traced is flushed
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tracing.Shutdown(ctx); err != nil {
				log.Warn("flushing traces", "err", err)
			}
		})
	}
	s.Group = &lifecycle.Group{Log: log, ShutdownTimeout: c.ShutdownTimeout, BeforeStop: s.Health.Draining, DrainDelay: c.DrainDelay}
	ops := httpx.Ops{Health: s.Health, Gatherer: gatherer, Info: httpx.BuildInfo{
		Service: name, Version: version.Version, Commit: version.Commit, BuildTime: version.BuildTime,
	}}
	opsMux := s.Mux
	if c.OpsAddr != "" { // probes, scrapes and profiles off the public port
		opsMux, ops.API = httpx.NewMux(c.Guard), s.Mux
		s.ops, s.opsAddr = opsMux, c.OpsAddr
	}
	ops.Register(opsMux)
	if c.Pprof {
		opsMux.Operator("GET /debug/pprof/", pprof.Index)
		opsMux.Operator("GET /debug/pprof/profile", pprof.Profile)
		opsMux.Operator("GET /debug/pprof/trace", pprof.Trace)
	}
	return s, nil
}

// OnClose registers cleanup (closing pools and clients) run after every component stopped, in
// reverse order of registration.
func (s *Service) OnClose(f func()) { s.closers = append(s.closers, f) }

// Close runs the registered cleanups; Serve calls it, callers that fail before Serve call it too.
func (s *Service) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// OnHTTPShutdown registers f to run when the HTTP server starts shutting down (end SSE streams).
func (s *Service) OnHTTPShutdown(f func()) { s.onHTTPShutdown = append(s.onHTTPShutdown, f) }

// Serve adds the HTTP server on addr as the last component (so it stops first), runs the group until
// ctx is done or a component fails, and closes resources.
func (s *Service) Serve(ctx context.Context, addr string) error {
	return s.serve(ctx, addr, nil)
}

// serve is Serve on ln when it is not nil (already bound to addr).
func (s *Service) serve(ctx context.Context, addr string, ln net.Listener) error {
	defer s.Close()
	if err := s.connectKafka(); err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return err
	}
	m := httpx.NewMetrics(s.Reg)
	if s.Tracing != nil {
		s.Mux.Instrument(otelhttp.NewMiddleware(s.Name, otelhttp.WithTracerProvider(s.Tracing.Provider),
			otelhttp.WithPropagators(obs.Propagator()), otelhttp.WithFilter(s.Mux.Traced)))
	}
	if s.ops != nil { // stops after the API's server: probes are answered until the API is done
		opsSrv := &httpx.Server{Addr: s.opsAddr, Listener: s.opsLn, Handler: s.ops, Log: s.Log, ShutdownTimeout: s.Group.ShutdownTimeout}
		s.Group.Add(lifecycle.Component{Name: "ops http", Run: opsSrv.Run})
	}
	srv := &httpx.Server{Addr: addr, Listener: ln, Handler: m.Wrap(s.Mux, s.Log), Log: s.Log, ShutdownTimeout: s.Group.ShutdownTimeout,
		OnShutdown: s.onHTTPShutdown}
	s.Group.Add(lifecycle.Component{Name: "http", Run: srv.Run})
	s.Log.Info("started", "version", version.Version, "addr", addr, "dependencies", strings.Join(s.Health.Checks(), ", "))
	if !s.adminToken && !loopbackOnly(addr) {
		s.Log.Warn("ADMIN_TOKEN is unset: operator endpoints answer loopback clients only; set it to use them from elsewhere")
	}
	err := s.Group.Run(ctx)
	if err != nil {
		s.Log.Error("stopped", "err", err)
	} else {
		s.Log.Info("stopped")
	}
	return err
}

// Main loads a service's configuration with configure (see Load) and runs it (see Run) on its
// HTTPAddr.
func Main[C any, P interface {
	*C
	common() *Common
}](ctx context.Context, name string, getenv func(string) string, stdout io.Writer, configure func(e *config.Env) C,
	wire func(ctx context.Context, s *Service, cfg C) error) error {
	cfg, err := Load[C, P](getenv, configure)
	if err != nil {
		return err
	}
	c := P(&cfg).common()
	return Run(ctx, name, stdout, *c, c.HTTPAddr, func(ctx context.Context, s *Service) error { return wire(ctx, s, cfg) })
}

// Run builds a service, lets wire connect its dependencies and register its components and routes,
// then serves on addr until ctx ends. Resources are closed on every path.
//
// The port is bound before wire, which may wait a long time for a dependency: a port already in use
// fails at once, and a port chosen free by a caller cannot be taken by someone else meanwhile.
// Connections made before wire returns wait in the listen backlog.
func Run(ctx context.Context, name string, stdout io.Writer, c Common, addr string, wire func(ctx context.Context, s *Service) error) error {
	s, err := New(name, stdout, c)
	if err != nil {
		return err
	}
	s.Log.Debug("configuration", "settings", c.Settings)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close()
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if s.ops != nil {
		if s.opsLn, err = net.Listen("tcp", s.opsAddr); err != nil {
			_ = ln.Close()
			s.Close()
			return fmt.Errorf("listen %s (ops): %w", s.opsAddr, err)
		}
	}
	if err := wire(ctx, s); err != nil {
		_ = ln.Close()
		if s.opsLn != nil {
			_ = s.opsLn.Close()
		}
		s.Close()
		return err
	}
	return s.serve(ctx, addr, ln)
}
