// Package calcd wires a calcd: the one CalculatorService, calc's
// interceptors (tracing, per-RPC metrics, access log and panic recovery,
// outermost first), grpc.health.v1 with one health state and server reflection (v1
// and v1alpha, answering with the schema's comments), all on every
// transport: the raw TCP endpoint (server/tcpserver), the gRPC endpoint
// (server/grpcserver) and the HTTP endpoint (server/httpserver: Connect,
// gRPC-Web, gRPC and REST, with the WebSocket endpoint server/wsserver at
// /ws and the web page server/webui at /); the metrics registry (server/metrics) and the
// optional admin port that serves it with health probes and pprof
// (server/admin); and the drain that stops them together.
// The calcd command is flags and signals around it; tests start the very
// same wiring (calcdtest).
package calcd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calccodec"
	"github.com/calcrpc/calc/internal/rpctrace"
	"github.com/calcrpc/calc/internal/schema"
	"github.com/calcrpc/calc/server/admin"
	"github.com/calcrpc/calc/server/auth"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/endpoint"
	"github.com/calcrpc/calc/server/grpcserver"
	"github.com/calcrpc/calc/server/httpserver"
	"github.com/calcrpc/calc/server/interceptor"
	"github.com/calcrpc/calc/server/metrics"
	"github.com/calcrpc/calc/server/tcpserver"
	"github.com/calcrpc/calc/server/webui"
	"github.com/calcrpc/calc/server/wsserver"
)

// Config configures a Server. The zero value serves calculator.New() with
// every transport's defaults.
type Config struct {
	// Logger receives both endpoints' logs, each record with a transport
	// attribute; nil means slog.Default().
	Logger *slog.Logger
	// Service is the implementation served on every transport; nil means
	// calculator.New().
	Service calculatorv1.CalculatorServiceServer
	// TCP holds the raw TCP endpoint's limits and timeouts. Its Logger,
	// interceptors, InlineMethods and Codec are set by New.
	TCP tcpserver.Options
	// GRPC holds the gRPC endpoint's limits and keepalive settings. Its
	// Logger and interceptors are set by New.
	GRPC grpcserver.Options
	// HTTP holds the HTTP endpoint's limits, timeouts and CORS. Its GRPC
	// options are set by New: GRPC's, with the HTTP endpoint's logger and
	// metrics.
	HTTP httpserver.Options
	// UnaryInterceptors and StreamInterceptors run on every transport,
	// inside calc's access log and recovery, first outermost.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
	// AccessLogEvery samples the access log on every transport: one call
	// in AccessLogEvery is logged at Info, the others at Debug; 0 logs
	// failed calls at Info and successful ones at Debug.
	AccessLogEvery int
	// Auth, when set, authenticates and authorizes every call on every
	// transport (inside the access log and recovery, before
	// UnaryInterceptors and StreamInterceptors); nil admits every call.
	Auth *auth.Authenticator
	// DrainDelay is how long Shutdown reports NOT_SERVING (health, and
	// /readyz on the admin port) while still serving everything, before
	// the transports drain: long enough for load balancers' health checks
	// to see it and stop sending new connections. 0 drains at once.
	DrainDelay time.Duration
	// RPCMetrics turns on the per-RPC metrics (grpc_server_*) on every
	// transport. On raw TCP they add no allocation and some atomic adds
	// and two clock reads per call (metrics.RPCMetrics); that is still
	// measurable on the cheapest calls (BenchmarkCalculate's metrics/
	// cases), so they are off unless asked for, and calcd turns them on
	// with its admin port. The raw TCP server's own figures (calc_tcp_*)
	// and the runtime collectors cost nothing until scraped and are always
	// registered.
	RPCMetrics bool
	// TLSConfig, when set, serves every RPC port over TLS with it
	// (server/tlsconfig makes one that reloads its files): the raw TCP
	// port with ALPN "calc/1", the gRPC port with "h2", the HTTP port with
	// "h2" and "http/1.1", TLS 1.3 at least; it replaces TCP.TLSConfig,
	// GRPC.TLSConfig and HTTP.TLSConfig. The admin port stays plaintext.
	// nil serves plaintext.
	TLSConfig *tls.Config
	// TracerProvider, when set, traces every call on every transport: a
	// server span per call, the caller's span context taken from its
	// traceparent and tracestate metadata. gRPC calls are traced by
	// otelgrpc's stats handler, raw TCP calls by an interceptor that makes
	// the same spans (internal/rpctrace), so a trace crosses transports.
	// nil traces nothing, at no cost.
	TracerProvider trace.TracerProvider
	// Propagator reads the callers' span context from their metadata on
	// every transport; nil means W3C Trace Context and Baggage.
	Propagator propagation.TextMapPropagator
	// TraceOnlyJoins makes raw TCP calls that carry no trace context run
	// without a span, at no cost: set it when TracerProvider samples no
	// trace it would start itself (OTEL_TRACES_SAMPLER always_off,
	// parentbased_always_off or a ratio of 0), so that only the calls in
	// a caller's trace pay for tracing; the spans exported are the same.
	// gRPC calls are traced by otelgrpc either way.
	TraceOnlyJoins bool
	// Admin configures the admin port, served when Listeners.Admin is
	// set. Its Metrics and Ready are set by New: the Server's Metrics and
	// the health state of the whole server ("").
	Admin admin.Options
}

// Server is a calcd: one service on every transport.
type Server struct {
	// TCP is the raw TCP endpoint.
	TCP *tcpserver.Server
	// GRPC is the gRPC endpoint.
	GRPC *grpcserver.Server
	// HTTP is the HTTP endpoint (Connect, gRPC-Web, gRPC, REST).
	HTTP *httpserver.Server
	// WS is the WebSocket endpoint, mounted at /ws on the HTTP port: the
	// raw TCP protocol over WebSocket (the web page at / uses it).
	WS *wsserver.Server
	// Metrics is the registry of the calcd's collectors: per-RPC metrics
	// of every transport, the raw TCP server's figures, and the Go runtime
	// and process collectors. The admin port serves it at /metrics.
	Metrics    *prometheus.Registry
	admin      *admin.Server
	health     *health.Server
	drainDelay time.Duration
	draining   atomic.Bool // a second Shutdown does not wait the delay again
	logger     *slog.Logger
}

// New returns a Server configured by cfg.
func New(cfg Config) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	svc := cfg.Service
	if svc == nil {
		svc = calculator.New()
	}
	// Tracing runs outermost: gRPC's stats handler sees the call before
	// any interceptor, and raw TCP's tracing interceptor comes first, so
	// the access log inside sees the span. Metrics run next, outside
	// recovery, so that a panic counts as the INTERNAL status it becomes.
	reg := metrics.NewRegistry()
	var gUnary, tUnary, hUnary, wUnary []grpc.UnaryServerInterceptor
	var gStream, tStream, hStream, wStream []grpc.StreamServerInterceptor
	if cfg.TracerProvider != nil {
		prop := cfg.Propagator
		if prop == nil {
			prop = rpctrace.Propagator()
		}
		cfg.GRPC.StatsHandlers = append(slices.Clip(cfg.GRPC.StatsHandlers),
			otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(cfg.TracerProvider), otelgrpc.WithPropagators(prop)))
		tr := rpctrace.NewServer(cfg.TracerProvider, prop, cfg.TraceOnlyJoins)
		tUnary, tStream = []grpc.UnaryServerInterceptor{tr.UnaryServerInterceptor()}, []grpc.StreamServerInterceptor{tr.StreamServerInterceptor()}
		wUnary, wStream = slices.Clone(tUnary), slices.Clone(tStream)
	}
	if cfg.RPCMetrics {
		// gRPC and HTTP count with go-grpc-middleware itself; raw TCP, whose
		// calls cost a tenth of gRPC's, with the same series resolved once
		// per method (metrics.RPCMetrics).
		gm, tm, hm, wm := metrics.NewServerMetrics("grpc"), metrics.NewRPCMetrics("tcp"), metrics.NewServerMetrics("http"), metrics.NewRPCMetrics("ws")
		reg.MustRegister(gm, tm, hm, wm)
		gUnary, gStream = []grpc.UnaryServerInterceptor{gm.UnaryServerInterceptor()}, []grpc.StreamServerInterceptor{gm.StreamServerInterceptor()}
		tUnary, tStream = append(tUnary, tm.UnaryServerInterceptor()), append(tStream, tm.StreamServerInterceptor())
		hUnary, hStream = []grpc.UnaryServerInterceptor{hm.UnaryServerInterceptor()}, []grpc.StreamServerInterceptor{hm.StreamServerInterceptor()}
		wUnary, wStream = append(wUnary, wm.UnaryServerInterceptor()), append(wStream, wm.StreamServerInterceptor())
	}

	if cfg.TLSConfig != nil {
		cfg.TCP.TLSConfig, cfg.GRPC.TLSConfig, cfg.HTTP.TLSConfig = cfg.TLSConfig, cfg.TLSConfig, cfg.TLSConfig
	}
	gopts := cfg.GRPC
	gopts.Logger = logger.With("transport", "grpc")
	gopts.AccessLogEvery = cfg.AccessLogEvery
	gopts.OuterUnaryInterceptors = gUnary
	gopts.OuterStreamInterceptors = gStream
	var authUnary []grpc.UnaryServerInterceptor
	var authStream []grpc.StreamServerInterceptor
	if cfg.Auth != nil {
		authUnary, authStream = []grpc.UnaryServerInterceptor{cfg.Auth.UnaryInterceptor()}, []grpc.StreamServerInterceptor{cfg.Auth.StreamInterceptor()}
	}
	gopts.UnaryInterceptors = slices.Concat(authUnary, cfg.UnaryInterceptors)
	gopts.StreamInterceptors = slices.Concat(authStream, cfg.StreamInterceptors)
	hopts := cfg.HTTP
	hopts.GRPC = gopts // the calls it transcodes run on a grpc.Server like the gRPC port's
	hopts.GRPC.TLSConfig = nil
	hopts.GRPC.Logger = logger.With("transport", "http")
	hopts.GRPC.OuterUnaryInterceptors, hopts.GRPC.OuterStreamInterceptors = hUnary, hStream
	g := grpcserver.New(gopts) // installs the access log and recovery itself
	h := httpserver.New(hopts)

	topts := cfg.TCP
	topts.Logger = logger.With("transport", "tcp")
	topts.UnaryInterceptors = slices.Concat(tUnary, interceptor.Unary(topts.Logger, cfg.AccessLogEvery), authUnary, cfg.UnaryInterceptors)
	topts.StreamInterceptors = slices.Concat(tStream, interceptor.Stream(topts.Logger, cfg.AccessLogEvery), authStream, cfg.StreamInterceptors)
	topts.InlineMethods = calculator.CheapMethods
	topts.Codec = calccodec.Codec{}
	t := tcpserver.New(topts)

	// The WebSocket endpoint (/ws on the HTTP port) is the raw TCP
	// protocol served by tcpserver's connection code, with the raw TCP
	// port's limits and chain and a metrics label of its own; the page
	// (/) calls the HTTP endpoint and /ws.
	wopts := wsserver.Options{TCP: cfg.TCP, AllowedOrigins: cfg.HTTP.CORS.AllowedOrigins}
	wopts.TCP.TLSConfig = nil // TLS, if any, is the HTTP port's
	wopts.TCP.Logger = logger.With("transport", "ws")
	wopts.TCP.UnaryInterceptors = slices.Concat(wUnary, interceptor.Unary(wopts.TCP.Logger, cfg.AccessLogEvery), authUnary, cfg.UnaryInterceptors)
	wopts.TCP.StreamInterceptors = slices.Concat(wStream, interceptor.Stream(wopts.TCP.Logger, cfg.AccessLogEvery), authStream, cfg.StreamInterceptors)
	wopts.TCP.InlineMethods = calculator.CheapMethods
	w := wsserver.New(wopts)
	reg.MustRegister(metrics.NewTCPCollector("tcp", t.Stats), metrics.NewTCPCollector("ws", w.Stats), metrics.NewHTTPCollector(h.Stats))
	h.Handle("/ws", w)
	ui := webui.Handler()
	for _, p := range webui.Patterns {
		h.Handle(p, ui)
	}

	// Reflection answers from the schema with its comments; should the
	// embedded copy fail to load (a test guards against it), from the
	// descriptors compiled in, without comments.
	var descriptors protodesc.Resolver = protoregistry.GlobalFiles
	if r, err := schema.NewResolver(); err != nil {
		logger.Error("server reflection will show no comments", "error", err)
	} else {
		descriptors = r
	}
	hs := health.NewServer()
	for _, e := range []transport{g, t, h, w} {
		calculatorv1.RegisterCalculatorServiceServer(e, svc)
		healthpb.RegisterHealthServer(e, hs)
		ropts := reflection.ServerOptions{Services: e, DescriptorResolver: descriptors}
		reflectionv1.RegisterServerReflectionServer(e, reflection.NewServerV1(ropts))
		reflectionv1alpha.RegisterServerReflectionServer(e, reflection.NewServer(ropts))
	}
	hs.SetServingStatus(calculatorv1.CalculatorService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	aopts := cfg.Admin
	aopts.Metrics = reg
	aopts.Ready = func() bool {
		resp, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	}
	reg.MustRegister(metrics.NewReadyGauge(aopts.Ready))
	return &Server{TCP: t, GRPC: g, HTTP: h, WS: w, Metrics: reg, admin: admin.New(aopts), health: hs, drainDelay: cfg.DrainDelay, logger: logger}
}

// transport is what New needs of an endpoint: a registrar that reflection
// can ask for its services.
type transport interface {
	grpc.ServiceRegistrar
	reflection.ServiceInfoProvider
}

// Listeners are the sockets a Server serves.
type Listeners struct {
	TCP  net.Listener // raw TCP
	GRPC net.Listener
	// HTTP is the HTTP endpoint's; nil serves none.
	HTTP net.Listener
	// Admin is the admin port's; nil serves none.
	Admin net.Listener
}

// Addrs are the addresses to listen on; an empty HTTP or Admin opens no
// such port.
type Addrs struct {
	TCP, GRPC, HTTP, Admin string
}

// Listen opens Listeners on the given addresses; an empty adminAddr opens
// no admin port. It opens no HTTP port: ListenAddrs does.
func Listen(tcpAddr, grpcAddr, adminAddr string) (Listeners, error) {
	return ListenAddrs(Addrs{TCP: tcpAddr, GRPC: grpcAddr, Admin: adminAddr})
}

// TCPKeepAlive is the TCP keepalive of every connection calcd accepts:
// a first probe after 5 minutes without traffic, then every 15 s, and the
// connection is dropped after 9 unanswered. Go's default (a probe after
// 15 s) costs 100,000 idle connections 6,700 probes a second each way, and
// connections opened together (clients reconnecting after a restart)
// probe together: on loopback (a proxy on the same host, or a benchmark)
// such bursts overflow the kernel's backlog, and connections whose probes
// are all dropped were aborted 150 s after they went quiet (BENCHMARKS.md,
// "Idle connections: what one costs"). A live peer needs no probe: the
// idle timeout and the clients' PINGs handle quiet connections, and
// keepalive only has to find a peer that vanished with a call open.
var TCPKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 5 * time.Minute, Interval: 15 * time.Second, Count: 9}

// ListenAddrs opens Listeners on a's addresses, with TCPKeepAlive; if one
// fails, those already open are closed.
func ListenAddrs(a Addrs) (Listeners, error) {
	var l Listeners
	var opened []net.Listener
	lc := net.ListenConfig{KeepAliveConfig: TCPKeepAlive}
	for _, x := range []struct {
		lis      *net.Listener
		addr     string
		optional bool
	}{{&l.TCP, a.TCP, false}, {&l.GRPC, a.GRPC, false}, {&l.HTTP, a.HTTP, true}, {&l.Admin, a.Admin, true}} {
		if x.optional && x.addr == "" {
			continue
		}
		lis, err := lc.Listen(context.Background(), "tcp", x.addr)
		if err != nil {
			for _, o := range opened {
				o.Close()
			}
			return Listeners{}, err
		}
		*x.lis = lis
		opened = append(opened, lis)
	}
	return l, nil
}

// Serve serves every endpoint on its listener, the HTTP endpoint if l.HTTP
// is set, and the admin port if l.Admin is set. It returns the first endpoint's failure (the caller then
// calls Shutdown to stop the others), or ErrServerClosed once Shutdown has
// stopped them all.
func (s *Server) Serve(l Listeners) error {
	serves := []func() error{
		func() error { return s.TCP.Serve(l.TCP) },
		func() error { return s.GRPC.Serve(l.GRPC) },
	}
	if l.HTTP != nil {
		serves = append(serves, func() error { return s.HTTP.Serve(l.HTTP) })
	}
	if l.Admin != nil {
		serves = append(serves, func() error { return s.admin.Serve(l.Admin) })
	}
	errc := make(chan error, len(serves))
	for _, serve := range serves {
		go func() { errc <- serve() }()
	}
	for range serves {
		if err := <-errc; !errors.Is(err, ErrServerClosed) {
			return err
		}
	}
	return ErrServerClosed
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = endpoint.ErrServerClosed

// Shutdown drains every endpoint at once: health reports NOT_SERVING on
// every transport (a Watch gets the change) and, after Config.DrainDelay
// (within ctx), the
// listeners close, raw TCP connections get GOAWAY, gRPC and HTTP/2
// connections an HTTP/2 GOAWAY, idle HTTP/1.1 connections are closed, and
// calls in flight, streams included, may finish. When ctx ends first, what
// is left is ended with UNAVAILABLE: raw TCP calls get a STATUS
// UNAVAILABLE, gRPC and HTTP connections are closed (which their clients
// see as UNAVAILABLE). That is the designed end of a drain, logged
// as a warning, and Shutdown returns nil for it; it returns an error only
// when the drain failed: a handler still running after its calls were
// ended.
//
// The admin port closes last, once the transports have drained, so that
// /readyz answers 503 throughout the drain.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	if first := !s.draining.Swap(true); first && s.drainDelay > 0 {
		t := time.NewTimer(s.drainDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	done := make(chan error, 4)
	go func() { done <- s.TCP.Shutdown(ctx) }()
	go func() { done <- s.GRPC.Shutdown(ctx) }()
	go func() { done <- s.HTTP.Shutdown(ctx) }()
	go func() { done <- s.WS.Shutdown(ctx) }()
	var failed []error
	cut := false
	for range 4 {
		switch err := <-done; {
		case err == nil:
		case errors.Is(err, ctx.Err()) && ctx.Err() != nil:
			cut = true
		default:
			failed = append(failed, err)
		}
	}
	if cut {
		s.logger.Warn("drain deadline reached: calls still running were ended with UNAVAILABLE")
	}
	// At the deadline the admin port is closed at once, a profile in
	// flight cut short: that is no failure of the drain.
	if err := s.admin.Shutdown(ctx); err != nil && !errors.Is(err, ctx.Err()) {
		failed = append(failed, err)
	}
	return errors.Join(failed...)
}
