// Package admin is calcd's admin port: an HTTP server for operators and
// their tools, apart from the RPC ports. It serves
//
//	/metrics        Prometheus metrics, from Options.Metrics (promhttp)
//	/healthz        200 "ok" while the process runs (liveness)
//	/readyz         200 "ok" while Options.Ready reports true, else 503
//	                "NOT_SERVING" (readiness: a draining calcd is not ready)
//	/debug/pprof/   net/http/pprof, only with Options.Pprof
//
// and 404 for anything else. It knows nothing of the transports: the
// wiring (server/calcd) hands it a registry and a readiness function.
// Profiles and metrics tell a great deal about a process: serve the admin
// port on loopback, or where only operators reach it.
package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/calcrpc/calc/server/endpoint"
)

// ErrServerClosed is returned by Serve after Shutdown. It is
// endpoint.ErrServerClosed, the one every calc endpoint returns.
var ErrServerClosed = endpoint.ErrServerClosed

// Options configures a Server. The zero value serves /healthz, a /readyz
// that is always ready, no /metrics and no profiles.
type Options struct {
	// Metrics is the registry /metrics serves; nil serves no /metrics.
	Metrics prometheus.Gatherer
	// Ready reports whether the process is ready for traffic; nil means
	// always.
	Ready func() bool
	// Pprof serves net/http/pprof under /debug/pprof/; off by default,
	// since profiles cost CPU while they run and reveal the program.
	Pprof bool
}

// Server is the admin HTTP server.
type Server struct {
	http *http.Server
}

// readHeaderTimeout bounds a request's headers, so that a client that
// connects and says nothing does not hold a connection open forever.
const readHeaderTimeout = 10 * time.Second

// New returns a Server configured by opts.
func New(opts Options) *Server {
	return &Server{http: &http.Server{Handler: Handler(opts), ReadHeaderTimeout: readHeaderTimeout}}
}

// Handler returns the admin port's routes, as a Server serves them.
func Handler(opts Options) http.Handler {
	mux := http.NewServeMux()
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Metrics, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready != nil && !opts.Ready() {
			text(w, http.StatusServiceUnavailable, "NOT_SERVING")
			return
		}
		text(w, http.StatusOK, "ok")
	})
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// text writes a short plain-text answer.
func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// Serve serves the admin port on lis until Shutdown, then returns
// ErrServerClosed.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.http.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return ErrServerClosed
}

// Shutdown stops accepting and waits for requests in flight (a CPU
// profile lasts as long as it asked) until ctx ends, when it closes what
// is left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	return err
}
