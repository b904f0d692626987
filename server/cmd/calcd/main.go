// Command calcd serves the calculator over gRPC, over calc's raw TCP
// protocol and, with --http-addr, over HTTP (Connect, gRPC-Web, gRPC and
// REST) from one process, with one CalculatorService behind them all.
//
// Usage:
//
//	calcd [flags]
//
// Every flag can also be set with an environment variable; a flag given on
// the command line wins:
//
//	--grpc-addr                 CALCD_GRPC_ADDR                 gRPC listen address (127.0.0.1:50051)
//	--tcp-addr                  CALCD_TCP_ADDR                  raw TCP listen address (127.0.0.1:4000)
//	--http-addr                 CALCD_HTTP_ADDR                 HTTP listen address: Connect, gRPC-Web, gRPC, REST (off; 127.0.0.1:8080 to enable)
//	--http-cors-origins         CALCD_HTTP_CORS_ORIGINS         origins whose browser pages may call the HTTP port, comma-separated, * for any (off)
//	--max-connections           CALCD_MAX_CONNECTIONS           connections on each transport, raw TCP past the handshake (10000)
//	--max-connections-per-addr  CALCD_MAX_CONNECTIONS_PER_ADDR  connections from one IP address, each transport (1024)
//	--max-handshakes            CALCD_MAX_HANDSHAKES            raw TCP connections before their preface (1024; the oldest is dropped)
//	--handshake-timeout         CALCD_HANDSHAKE_TIMEOUT         wait for the preface or HTTP/2 handshake (10s)
//	--max-connection-age        CALCD_MAX_CONNECTION_AGE        GOAWAY connections this old, both transports (0: never)
//	--max-connection-age-grace  CALCD_MAX_CONNECTION_AGE_GRACE  then end their calls with UNAVAILABLE (0: let them finish)
//	--auth-tokens               CALCD_AUTH_TOKENS               policy file: principals, methods, rate limits (off)
//	--drain-delay               CALCD_DRAIN_DELAY               NOT_SERVING this long before draining on SIGTERM (0)
//	--max-streams-per-conn      CALCD_MAX_STREAMS_PER_CONN      streams per connection, both transports (100; gRPC: MAX_CONCURRENT_STREAMS)
//	--max-streams               CALCD_MAX_STREAMS               streams open on each transport in all (10000)
//	--max-pending-frame-bytes   CALCD_MAX_PENDING_FRAME_BYTES   raw TCP memory for large frames being received, in all (67108864)
//	--tcp-dispatch              CALCD_TCP_DISPATCH              where raw TCP unary handlers run: inline, goroutine or pool (inline)
//	--access-log-every          CALCD_ACCESS_LOG_EVERY          log one call in N at info (0: failures at info)
//	--log-level                 CALCD_LOG_LEVEL                 debug, info, warn or error (info)
//	--log-format                CALCD_LOG_FORMAT                json or text (json)
//	--shutdown-timeout          CALCD_SHUTDOWN_TIMEOUT          how long SIGTERM waits for calls (30s)
//	--admin-addr                CALCD_ADMIN_ADDR                admin port listen address (off)
//	--admin-pprof               CALCD_ADMIN_PPROF               serve net/http/pprof on the admin port (false)
//	--rpc-metrics               CALCD_RPC_METRICS               per-RPC metrics with the admin port (true)
//	--pprof-addr                CALCD_PPROF_ADDR                deprecated: --admin-addr ADDR --admin-pprof
//	--tls-cert                  CALCD_TLS_CERT                  PEM certificate chain: serve both RPC ports over TLS 1.3 (off)
//	--tls-key                   CALCD_TLS_KEY                   PEM private key of --tls-cert
//	--tls-client-ca             CALCD_TLS_CLIENT_CA             PEM CA certificates: require client certificates signed by them (mutual TLS; off)
//	--insecure-listen           CALCD_INSECURE_LISTEN           allow non-loopback RPC addresses without TLS and auth (false)
//	--version                                                   print the version and exit
//
// An address with port 0 picks a free port; the "listening" log record
// names the address actually bound.
//
// The admin port is off by default; set --admin-addr 127.0.0.1:9464 to
// enable it (loopback recommended: metrics and profiles say a great deal
// about the process). It serves /metrics (Prometheus: per-RPC metrics of
// both transports, labelled transport="grpc" or "tcp", the raw TCP
// server's calc_tcp_* figures, Go runtime and process metrics), /healthz
// (200 while the process runs), /readyz (200 while serving, 503
// NOT_SERVING while draining) and, with --admin-pprof, /debug/pprof/.
// --rpc-metrics=false keeps everything but the per-RPC metrics, which
// cost the cheapest raw TCP calls up to a fifth of their time. Work past a limit is refused with
// RESOURCE_EXHAUSTED; those already served are unaffected.
//
// # Tracing
//
// calcd traces calls with OpenTelemetry when the standard OTEL_*
// environment variables ask for it: OTEL_TRACES_EXPORTER=otlp, or an OTLP
// endpoint in OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); with none of them, nothing is
// traced, at no cost. Spans are exported over OTLP (http/protobuf, or
// grpc with OTEL_EXPORTER_OTLP_PROTOCOL=grpc), sampled as
// OTEL_TRACES_SAMPLER says (parentbased_always_on by default), with
// service.name calcd unless OTEL_SERVICE_NAME says otherwise. Every call
// on either transport gets a server span, shaped as otelgrpc's, in the
// trace of the caller's W3C traceparent metadata, and the access log
// records its trace_id and span_id. With a sampler that starts no trace
// itself (always_off, parentbased_always_off, a ratio of 0), a raw TCP
// call without a traceparent gets no span at all, so that tracing costs
// only the calls in a caller's trace. OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none turn it off. The "tracing" log record at
// start says where spans go.
//
// # TLS and protected mode
//
// With --tls-cert and --tls-key every RPC port serves TLS 1.3 only: the raw
// TCP port requires ALPN "calc/1" (PROTOCOL.md, TLS), the gRPC port "h2",
// the HTTP port "h2" or "http/1.1" (without TLS it serves HTTP/1.1 and
// HTTP/2 with prior knowledge, h2c).
// With --tls-client-ca as well, every client must present a certificate
// signed by one of its CAs. The admin port stays plaintext: keep it on
// loopback or behind your own network policy. calcd reloads the three
// files on SIGHUP and when it sees one change (it looks every 5 seconds);
// new connections get the new certificate, established ones carry on, and
// a bad file is logged and the previous certificate kept. go run
// ./tools/devcerts makes certificates for development.
//
// Protected mode: calcd refuses to start, exiting 2 before it listens,
// when --tcp-addr, --grpc-addr or --http-addr is reachable from the network (not
// localhost or a loopback IP address; an empty host, 0.0.0.0 and :: are
// every interface) without TLS and authentication (--tls-cert, and
// --auth-tokens or --tls-client-ca). --insecure-listen overrides it, with a
// warning in the log.
//
// On SIGINT or SIGTERM calcd drains: health reports NOT_SERVING (and
// /readyz 503; the admin port closes after the drain) while calcd still
// serves everything for --drain-delay, then the RPC listeners close, every connection gets GOAWAY (raw TCP) or an HTTP/2
// GOAWAY (gRPC), and calls in flight, open streams included, may finish.
// At --shutdown-timeout whatever still runs is ended with UNAVAILABLE,
// which clients may retry elsewhere. Either way calcd exits 0; it exits 1
// only when the drain fails (a handler that will not stop) or serving
// failed. A second signal exits 1 at once. calcd --help exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/calcrpc/calc/internal/busypoll"
	"github.com/calcrpc/calc/internal/otelenv"
	"github.com/calcrpc/calc/internal/version"
	"github.com/calcrpc/calc/server/auth"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/tcpserver"
	"github.com/calcrpc/calc/server/tlsconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { // a second signal does not wait for the drain
		<-ctx.Done()
		stop()
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM)
		<-c
		os.Exit(1)
	}()
	switch err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case errors.Is(err, errProtected):
		fmt.Fprintln(os.Stderr, "calcd:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "calcd:", err)
		os.Exit(1)
	}
}

// reloadPoll is how often calcd looks for changes to the files it
// reloads (SIGHUP reloads them at once).
const reloadPoll = 5 * time.Second

// tracingFlushTimeout bounds the export of the last spans at exit.
const tracingFlushTimeout = 5 * time.Second

// errUsage marks a command line the flag package has already complained
// about.
var errUsage = errors.New("usage")

// config is calcd's configuration.
type config struct {
	grpcAddr, tcpAddr, adminAddr string
	httpAddr                     string
	authFile                     string
	logLevel                     slog.Level
	logFormat                    string
	shutdownTimeout              time.Duration
	tls                          tlsconfig.Files
	insecureListen               bool
	calcd                        calcd.Config
	version                      bool
	deprecated                   []string // warnings to log
}

// parseConfig reads flags over environment variables over defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("calcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var errs []error
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	str := func(p *string, name, envName, def, usage string) {
		fs.StringVar(p, name, env(envName, def), usage+" (env "+envName+")")
	}
	num := func(p *int, name, envName string, def int, usage string) {
		v := env(envName, strconv.Itoa(def))
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("invalid %s %q (env %s): want a positive integer", name, v, envName))
		}
		*p = n
		fs.IntVar(p, name, n, usage+" (env "+envName+")")
	}
	num0 := func(p *int, name, envName, usage string) { // 0: off
		v := env(envName, "0")
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("invalid %s %q (env %s): want 0 or a positive integer", name, v, envName))
		}
		*p = n
		fs.IntVar(p, name, n, usage+" (env "+envName+")")
	}
	dur := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		v := env(envName, def.String())
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("invalid %s %q (env %s): want a positive duration such as 10s", name, v, envName))
		}
		*p = d
		fs.DurationVar(p, name, d, usage+" (env "+envName+")")
	}
	optDur := func(p *time.Duration, name, envName, usage string) { // 0: off
		v := env(envName, "0s")
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("invalid %s %q (env %s): want a duration such as 30m, or 0 for none", name, v, envName))
		}
		*p = d
		fs.DurationVar(p, name, d, usage+" (env "+envName+")")
	}
	boolean := func(p *bool, name, envName, def, usage string) {
		v := env(envName, def)
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("invalid %s %q (env %s): want true or false", name, v, envName))
		}
		fs.BoolVar(p, name, b, usage+" (env "+envName+")")
	}
	t, g := &cfg.calcd.TCP, &cfg.calcd.GRPC
	var level, timeout, pprofAddr, corsOrigins string
	var rpcMetrics bool
	str(&cfg.grpcAddr, "grpc-addr", "CALCD_GRPC_ADDR", "127.0.0.1:50051", "gRPC listen `address`")
	str(&cfg.tcpAddr, "tcp-addr", "CALCD_TCP_ADDR", "127.0.0.1:4000", "raw TCP listen `address`")
	str(&cfg.httpAddr, "http-addr", "CALCD_HTTP_ADDR", "", "HTTP listen `address` (Connect, gRPC-Web, gRPC and REST over HTTP/1.1 and HTTP/2), off if empty; set 127.0.0.1:8080 to enable")
	str(&corsOrigins, "http-cors-origins", "CALCD_HTTP_CORS_ORIGINS", "", "`origins` (scheme://host[:port], comma-separated; * for any) whose browser pages may call the HTTP port; off if empty")
	str(&cfg.adminAddr, "admin-addr", "CALCD_ADMIN_ADDR", "", "admin port listen `address` (/metrics, /healthz, /readyz), off if empty; set 127.0.0.1:9464 to enable, loopback recommended")
	boolean(&rpcMetrics, "rpc-metrics", "CALCD_RPC_METRICS", "true", "with the admin port, per-RPC metrics (grpc_server_*) on both transports")
	boolean(&cfg.calcd.Admin.Pprof, "admin-pprof", "CALCD_ADMIN_PPROF", "false", "serve net/http/pprof under /debug/pprof/ on the admin port")
	str(&pprofAddr, "pprof-addr", "CALCD_PPROF_ADDR", "", "deprecated: means --admin-addr `address` --admin-pprof")
	num(&t.MaxConnections, "max-connections", "CALCD_MAX_CONNECTIONS", tcpserver.DefaultMaxConnections, "connections on each transport (raw TCP: past the handshake)")
	num(&t.MaxConnectionsPerAddr, "max-connections-per-addr", "CALCD_MAX_CONNECTIONS_PER_ADDR", tcpserver.DefaultMaxConnectionsPerAddr, "connections from one IP address, on each transport (raise it behind a proxy)")
	num(&t.MaxHandshakes, "max-handshakes", "CALCD_MAX_HANDSHAKES", tcpserver.DefaultMaxHandshakes, "raw TCP connections that have not sent their preface; at the cap the oldest is dropped")
	dur(&t.HandshakeTimeout, "handshake-timeout", "CALCD_HANDSHAKE_TIMEOUT", tcpserver.DefaultHandshakeTimeout, "wait for a new connection's preface (raw TCP) or HTTP/2 handshake (gRPC)")
	optDur(&t.MaxConnectionAge, "max-connection-age", "CALCD_MAX_CONNECTION_AGE", "on every transport, GOAWAY a connection this old (±10%; HTTP/1.1: close it) so that clients reconnect and rebalance; 0 for never")
	optDur(&t.MaxConnectionAgeGrace, "max-connection-age-grace", "CALCD_MAX_CONNECTION_AGE_GRACE", "after that GOAWAY, end calls still running with UNAVAILABLE this much later; 0 to let them finish")
	str(&cfg.authFile, "auth-tokens", "CALCD_AUTH_TOKENS", "", "policy `file` of principals (token SHA-256 digests or client certificate names), their methods and rate limits; reloaded on change and on SIGHUP; off if empty")
	optDur(&cfg.calcd.DrainDelay, "drain-delay", "CALCD_DRAIN_DELAY", "on SIGTERM, report NOT_SERVING for this long before draining, so load balancers stop sending first; 0 for none")
	num(&t.MaxConcurrentStreams, "max-streams-per-conn", "CALCD_MAX_STREAMS_PER_CONN", tcpserver.DefaultMaxConcurrentStreams, "streams open on one connection, on both transports (gRPC: HTTP/2 MAX_CONCURRENT_STREAMS, which counts unary calls too)")
	num(&t.MaxStreams, "max-streams", "CALCD_MAX_STREAMS", tcpserver.DefaultMaxStreams, "streams open on each transport in all")
	num(&t.MaxPendingFrameBytes, "max-pending-frame-bytes", "CALCD_MAX_PENDING_FRAME_BYTES", tcpserver.DefaultMaxPendingFrameBytes, "raw TCP memory, in bytes, for frames over 16 KiB being received, all connections together")
	var busyPoll time.Duration
	busyPollEnv := env("CALCD_TCP_BUSY_POLL", busypoll.Default.String())
	if d, err := time.ParseDuration(busyPollEnv); err != nil || d < 0 {
		errs = append(errs, fmt.Errorf("invalid tcp-busy-poll %q (env CALCD_TCP_BUSY_POLL): want a duration such as 50us, or 0 for none", busyPollEnv))
	} else {
		busyPoll = d
	}
	fs.DurationVar(&busyPoll, "tcp-busy-poll", busyPoll, "how long a raw TCP connection that has just served several calls at once polls its socket for the next ones before it parks (BENCHMARKS.md: busy polling), at most 1ms; 0 for never (env CALCD_TCP_BUSY_POLL)")
	var dispatch string
	str(&dispatch, "tcp-dispatch", "CALCD_TCP_DISPATCH", "inline", "where raw TCP unary handlers run: inline (cheap methods on the connection's goroutine, others in a goroutine each), goroutine (a goroutine per call) or pool (a worker per CPU fed by a bounded queue); BENCHMARKS.md compares them")
	str(&level, "log-level", "CALCD_LOG_LEVEL", "info", "debug, info, warn or error")
	num0(&cfg.calcd.AccessLogEvery, "access-log-every", "CALCD_ACCESS_LOG_EVERY", "access log: log one call in `N` at info, whatever its outcome, and the rest at debug; 0: failed calls at info, successful ones at debug")
	str(&cfg.logFormat, "log-format", "CALCD_LOG_FORMAT", "json", "json or text")
	str(&timeout, "shutdown-timeout", "CALCD_SHUTDOWN_TIMEOUT", "30s", "how long a drain waits for calls before ending them with UNAVAILABLE")
	str(&cfg.tls.Cert, "tls-cert", "CALCD_TLS_CERT", "", "PEM certificate chain `file`: serve both RPC ports over TLS 1.3 (with --tls-key); reloaded on SIGHUP and on change")
	str(&cfg.tls.Key, "tls-key", "CALCD_TLS_KEY", "", "PEM private key `file` of --tls-cert")
	str(&cfg.tls.ClientCA, "tls-client-ca", "CALCD_TLS_CLIENT_CA", "", "PEM CA certificates `file`: require client certificates signed by one of them (mutual TLS)")
	boolean(&cfg.insecureListen, "insecure-listen", "CALCD_INSECURE_LISTEN", "false", "allow RPC addresses reachable from the network without TLS and authentication (protected mode is on otherwise)")
	fs.BoolVar(&cfg.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, errUsage
	}
	if cfg.version {
		return cfg, nil
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { // a valid flag overrides an invalid environment variable
		errs = slices.DeleteFunc(errs, func(e error) bool { return strings.HasPrefix(e.Error(), "invalid "+f.Name+" ") })
	})
	if len(errs) > 0 {
		return cfg, errs[0]
	}
	if pprofAddr != "" {
		if cfg.adminAddr != "" && cfg.adminAddr != pprofAddr {
			return cfg, errors.New("--pprof-addr is deprecated and means --admin-addr with --admin-pprof: give --admin-addr alone")
		}
		cfg.adminAddr, cfg.calcd.Admin.Pprof = pprofAddr, true
		cfg.deprecated = append(cfg.deprecated, "--pprof-addr (CALCD_PPROF_ADDR) is deprecated: use --admin-addr with --admin-pprof")
	}
	cfg.calcd.RPCMetrics = rpcMetrics && cfg.adminAddr != ""
	if (cfg.tls.Cert == "") != (cfg.tls.Key == "") {
		return cfg, errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.tls.ClientCA != "" && cfg.tls.Cert == "" {
		return cfg, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	for _, v := range []int{t.MaxConnections, t.MaxConnectionsPerAddr, t.MaxHandshakes, t.MaxConcurrentStreams, t.MaxStreams, t.MaxPendingFrameBytes} {
		if v <= 0 {
			return cfg, errors.New("limits must be positive integers")
		}
	}
	switch {
	case busyPoll < 0 || busyPoll > busypoll.Max:
		return cfg, fmt.Errorf("--tcp-busy-poll (CALCD_TCP_BUSY_POLL) must be between 0 and %v", busypoll.Max)
	case busyPoll == 0:
		t.BusyPoll = -1 // off
	default:
		t.BusyPoll = busyPoll
	}
	if t.HandshakeTimeout <= 0 {
		return cfg, errors.New("--handshake-timeout must be positive")
	}
	if cfg.calcd.AccessLogEvery < 0 {
		return cfg, errors.New("--access-log-every must not be negative")
	}
	if t.MaxConnectionAge < 0 || t.MaxConnectionAgeGrace < 0 || cfg.calcd.DrainDelay < 0 {
		return cfg, errors.New("--max-connection-age, --max-connection-age-grace and --drain-delay must not be negative")
	}
	g.MaxConcurrentStreams, g.MaxStreams = t.MaxConcurrentStreams, t.MaxStreams
	h := &cfg.calcd.HTTP
	h.MaxConcurrentStreams = t.MaxConcurrentStreams
	h.MaxConnections, h.MaxConnectionsPerAddr, h.HeaderTimeout = t.MaxConnections, t.MaxConnectionsPerAddr, t.HandshakeTimeout
	h.MaxConnectionAge, h.MaxConnectionAgeGrace = t.MaxConnectionAge, t.MaxConnectionAgeGrace
	for _, o := range strings.Split(corsOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			h.CORS.AllowedOrigins = append(h.CORS.AllowedOrigins, o)
		}
	}
	if len(h.CORS.AllowedOrigins) > 0 && cfg.httpAddr == "" {
		return cfg, errors.New("--http-cors-origins needs --http-addr")
	}
	g.MaxConnectionAge, g.MaxConnectionAgeGrace = t.MaxConnectionAge, t.MaxConnectionAgeGrace
	g.MaxConnections, g.MaxConnectionsPerAddr, g.HandshakeTimeout = t.MaxConnections, t.MaxConnectionsPerAddr, t.HandshakeTimeout
	var err error
	if t.Dispatch, err = tcpserver.ParseDispatch(dispatch); err != nil {
		return cfg, fmt.Errorf("invalid --tcp-dispatch %q: want inline, goroutine or pool", dispatch)
	}
	if err := cfg.logLevel.UnmarshalText([]byte(level)); err != nil {
		return cfg, fmt.Errorf("invalid log level %q", level)
	}
	if cfg.logFormat != "json" && cfg.logFormat != "text" {
		return cfg, fmt.Errorf("invalid log format %q", cfg.logFormat)
	}
	if cfg.shutdownTimeout, err = time.ParseDuration(timeout); err != nil {
		return cfg, fmt.Errorf("invalid shutdown timeout %q", timeout)
	}
	return cfg, nil
}

// run serves until ctx is done, then drains.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.version {
		fmt.Fprintln(stdout, version.String("calcd"))
		return nil
	}
	hopts := &slog.HandlerOptions{Level: cfg.logLevel}
	var handler slog.Handler = slog.NewJSONHandler(stderr, hopts)
	if cfg.logFormat == "text" {
		handler = slog.NewTextHandler(stderr, hopts)
	}
	logger := slog.New(handler)
	for _, msg := range cfg.deprecated {
		logger.Warn(msg)
	}
	warning, err := protect(cfg)
	if err != nil {
		return err
	}
	if warning != "" {
		logger.Warn(warning)
	}
	cfg.calcd.Logger = logger
	tracing, err := otelenv.Setup(ctx, "calcd", logger)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	if tracing != nil {
		cfg.calcd.TracerProvider, cfg.calcd.Propagator = tracing.Provider, tracing.Propagator
		cfg.calcd.TraceOnlyJoins = tracing.RootsUnsampled
		logger.Info("tracing", "export", tracing.Description)
		defer func() { // after the drain: export the last spans
			fctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
			defer cancel()
			if err := tracing.Shutdown(fctx); err != nil {
				logger.Warn("tracing: spans not exported", "error", err)
			}
		}()
	}
	var reloaders []func() error // on SIGHUP; each also watches its files
	if cfg.tls.Cert != "" {
		tlsFiles, err := tlsconfig.New(cfg.tls, tlsconfig.Options{Logger: logger})
		if err != nil {
			return err
		}
		cfg.calcd.TLSConfig = tlsFiles.Config()
		go tlsFiles.Watch(ctx)
		reloaders = append(reloaders, tlsFiles.Reload)
	}
	if cfg.authFile != "" {
		a, err := auth.New(cfg.authFile, logger)
		if err != nil {
			return fmt.Errorf("--auth-tokens: %w", err)
		}
		cfg.calcd.Auth = a
		go a.Watch(ctx, reloadPoll)
		reloaders = append(reloaders, a.Reload)
	}
	if len(reloaders) > 0 {
		hup := make(chan os.Signal, 1)
		notifyReload(hup)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					for _, reload := range reloaders {
						_ = reload() // a failure is logged, and the old files stay in force
					}
				}
			}
		}()
	}
	srv := calcd.New(cfg.calcd)

	lis, err := calcd.ListenAddrs(calcd.Addrs{TCP: cfg.tcpAddr, GRPC: cfg.grpcAddr, HTTP: cfg.httpAddr, Admin: cfg.adminAddr})
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	secure := cfg.tls.Cert != ""
	logger.Info("listening", "transport", "grpc", "addr", lis.GRPC.Addr().String(), "tls", secure, "version", version.String("calcd"))
	logger.Info("listening", "transport", "tcp", "addr", lis.TCP.Addr().String(), "tls", secure)
	if lis.HTTP != nil {
		logger.Info("listening", "transport", "http", "addr", lis.HTTP.Addr().String(), "tls", secure,
			"cors_origins", cfg.calcd.HTTP.CORS.AllowedOrigins)
	}
	if lis.Admin != nil {
		logger.Info("listening", "transport", "admin", "addr", lis.Admin.Addr().String(), "pprof", cfg.calcd.Admin.Pprof)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	logger.Info("draining", "delay", cfg.calcd.DrainDelay.String(), "timeout", cfg.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.calcd.DrainDelay+cfg.shutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	if serveErr != nil && !errors.Is(serveErr, calcd.ErrServerClosed) {
		return serveErr
	}
	if shutdownErr != nil {
		return fmt.Errorf("drain failed: %w", shutdownErr)
	}
	logger.Info("stopped")
	return nil
}

// errProtected marks protected mode's refusal to start; calcd exits 2.
var errProtected = errors.New("protected mode")

// protect is protected mode: it refuses RPC addresses (--tcp-addr,
// --grpc-addr, and --http-addr when set) reachable from the network unless their traffic is protected, by TLS and authentication
// (--tls-cert with --auth-tokens or --tls-client-ca), or --insecure-listen
// accepts the risk, which it returns a warning for.
func protect(cfg config) (warning string, err error) {
	var missing []string
	if cfg.tls.Cert == "" {
		missing = append(missing, "TLS")
	}
	if cfg.authFile == "" && cfg.tls.ClientCA == "" {
		missing = append(missing, "authentication")
	}
	if len(missing) == 0 {
		return "", nil
	}
	without := strings.Join(missing, " and ")
	addrs := []struct{ flag, addr string }{{"--tcp-addr", cfg.tcpAddr}, {"--grpc-addr", cfg.grpcAddr}}
	if cfg.httpAddr != "" { // off otherwise
		addrs = append(addrs, struct{ flag, addr string }{"--http-addr", cfg.httpAddr})
	}
	for _, a := range addrs {
		if calcd.Loopback(a.addr) {
			continue
		}
		if cfg.insecureListen {
			return fmt.Sprintf("%s %s is reachable from the network without %s (--insecure-listen)", a.flag, a.addr, without), nil
		}
		return "", fmt.Errorf("%w: refusing to listen on %s %s, reachable from the network, without %s: "+
			"give --tls-cert and --tls-key, and --auth-tokens or --tls-client-ca; listen on a loopback address; "+
			"or accept the risk with --insecure-listen", errProtected, a.flag, a.addr, without)
	}
	return "", nil
}
