package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// BuildInfo is what /info reports; main fills it from -ldflags.
type BuildInfo struct {
	Service   string `json:"service"`
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildTime string `json:"buildTime"`
	// Routes are the routes the service serves with their protection (filled per request from its Mux).
	Routes []Route `json:"routes,omitempty"`
}

// Ops are the operational endpoints every service serves next to its API.
type Ops struct {
	Health   *Health
	Info     BuildInfo
	Gatherer prometheus.Gatherer
	// API is the mux of the service's API when the ops endpoints are served apart from it (an ops
	// port); /info lists the routes of both. nil: they share one mux.
	API *Mux
}

// Register adds /healthz, /readyz, /health, /metrics, /info and the /actuator aliases to mux.
// /info lists the routes mux serves (and API's).
func (o Ops) Register(mux *Mux) {
	live := func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "UP"})
	}
	info := func(w http.ResponseWriter, _ *http.Request) {
		i := o.Info
		i.Routes = mux.Routes()
		if o.API != nil {
			i.Routes = append(o.API.Routes(), i.Routes...)
		}
		WriteJSON(w, http.StatusOK, i)
	}
	health := func(w http.ResponseWriter, r *http.Request) {
		o.Health.serveHealth(w, r, mux.guard.operator(r))
	}
	metrics := promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})
	mux.platformRoute("GET /healthz", http.HandlerFunc(live))
	mux.platformRoute("GET /readyz", http.HandlerFunc(o.Health.serveReady))
	mux.platformRoute("GET /health", http.HandlerFunc(health))
	mux.platformRoute("GET /actuator/health", http.HandlerFunc(health))
	mux.platformRoute("GET /info", http.HandlerFunc(info))
	mux.platformRoute("GET /actuator/info", http.HandlerFunc(info))
	mux.platformRoute("GET /metrics", metrics)
	mux.platformRoute("GET /actuator/prometheus", metrics)
}

// Metrics instruments handlers with a request-duration histogram labelled by route pattern, method
// and status (the pattern, not the path, keeps cardinality bounded).
type Metrics struct {
	dur *prometheus.HistogramVec
	ids *requestIDs
}

// NewMetrics registers http_server_request_duration_seconds.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{dur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_server_request_duration_seconds",
		Help:    "HTTP request latency by route pattern, method and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method", "status"}), ids: newRequestIDs()}
	reg.MustRegister(m.dur)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Wrap gives each request an id (X-Request-Id, in every problem body and in the log lines about
// it), instruments mux, and recovers panics into a 500 problem (logged), so one bad request
// cannot take the process down.
func (m *Metrics) Wrap(mux *Mux, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := m.ids.of(r)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		w.Header().Set("X-Request-Id", id)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic in handler", "panic", fmt.Sprint(p), "path", r.URL.Path, "requestId", id)
				WriteProblem(sw, r, NewProblem(http.StatusInternalServerError, "internal error"))
			}
			pattern := mux.pattern(r)
			if pattern == "" {
				pattern = "unmatched"
			}
			m.dur.WithLabelValues(pattern, r.Method, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
		}()
		mux.ServeHTTP(sw, r)
	})
}

// Server serves h on Addr until ctx is cancelled, then shuts down gracefully within ShutdownTimeout.
type Server struct {
	Addr            string
	Handler         http.Handler
	Log             *slog.Logger
	ShutdownTimeout time.Duration
	// Listener, when set, is used instead of listening on Addr (tests use port 0).
	Listener net.Listener
	// OnShutdown functions run when shutdown starts, e.g. to end long-lived streams, which
	// Shutdown would otherwise wait for.
	OnShutdown []func()
}

// Run implements a lifecycle component.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{
		Addr:              s.Addr,
		Handler:           s.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		// No WriteTimeout: SSE streams are long-lived; handlers bound their own work.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	for _, f := range s.OnShutdown {
		srv.RegisterOnShutdown(f)
	}
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Addr); err != nil {
			return fmt.Errorf("listen %s: %w", s.Addr, err)
		}
	}
	s.Log.Debug("http listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = srv.Close()
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
