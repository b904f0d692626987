// Package dial opens connections to a calc server over either of its
// transports, calc's raw TCP protocol (client/tcpconn) or gRPC, as the
// calc and calc-bench commands configure them with their shared --addr,
// --transport, --compression and --tls flags. Both transports give a
// grpc.ClientConnInterface, so the generated client works on either.
package dial

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // --compression gzip
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/calcrpc/calc/client/tcpconn"
	_ "github.com/calcrpc/calc/internal/grpcsnappy" // --compression snappy
	"github.com/calcrpc/calc/internal/otelenv"
	"github.com/calcrpc/calc/internal/rpctrace"
	"github.com/calcrpc/calc/internal/wire"
)

// The default addresses of calcd's two endpoints.
const (
	defaultTCPAddr  = "127.0.0.1:4000"
	defaultGRPCAddr = "127.0.0.1:50051"
)

// Config says which server to connect to and how.
type Config struct {
	// Addr is the server's HOST:PORT, a comma-separated list of servers
	// (HOST:PORT,HOST:PORT) or dns:///HOST:PORT for every address of a
	// name; Check sets an empty Addr to the transport's default,
	// 127.0.0.1:4000 for tcp or 127.0.0.1:50051 for grpc. Calls are spread
	// over several servers round robin.
	Addr string
	// Transport is "tcp" (calc's raw TCP protocol) or "grpc".
	Transport string
	// Compression is the gRPC message compression: "none", "gzip" or
	// "snappy". Raw TCP compresses large messages by itself and takes
	// only "none".
	Compression string
	// TLS is the TLS configuration of either transport (--tls flags).
	TLS TLS
	// Token, if set, is sent as "authorization: Bearer <token>" metadata
	// on every call; Check refuses it in plaintext to a server that is not
	// on a loopback address.
	Token string
	// NoRetry (--retry=false) turns off the retry of unary calls that
	// failed with UNAVAILABLE although the server may have processed them
	// (a connection lost mid-call, a server ended while shutting down),
	// which is on by default because every calc method is pure: at most 5
	// attempts, 100 ms backoff ×1.6 up to 1 s, within the call's deadline,
	// and none while no server is reachable. Calls a server never
	// processed are retried either way: after a GOAWAY over raw TCP, by
	// gRPC's transparent retries over gRPC.
	NoRetry bool
	// OnRetry, if not nil, is called before each retry of a call: over
	// raw TCP every retry, over gRPC those of NoRetry's policy (gRPC's
	// transparent retries are not seen). calc-bench counts retries with
	// it.
	OnRetry func()

	// TracerProvider, when set, traces every call with a client span and
	// sends its context to the server in traceparent/tracestate metadata:
	// over gRPC with otelgrpc.NewClientHandler, over raw TCP with
	// tcpconn.Options.TracerProvider, which makes the same spans. nil
	// traces nothing.
	TracerProvider trace.TracerProvider
	// Propagator writes the span context into the metadata; nil means W3C
	// Trace Context and Baggage.
	Propagator propagation.TextMapPropagator
	// ClientMetrics, when set, counts every call (grpc_client_*; see
	// NewClientMetrics) on either transport.
	ClientMetrics *grpcprom.ClientMetrics
	// Codec, for the raw TCP transport, encodes and decodes messages in
	// place of protobuf-go (tcpconn.Options.Codec); nil means protobuf-go.
	Codec wire.Codec

	tlsConfig *tls.Config // TLS's, loaded by Check
}

// ClientHandlingBuckets are the bounds, in seconds, of
// grpc_client_handling_seconds: calc's calls take tens of microseconds
// on loopback, so they start at 50 µs, as calcd's server histogram does.
var ClientHandlingBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewClientMetrics returns go-grpc-middleware's client metrics, for
// Config.ClientMetrics, with a constant label transport (tcp or grpc) as
// calcd's server metrics have:
//
//	grpc_client_started_total{grpc_type,grpc_service,grpc_method,transport}
//	grpc_client_handled_total{grpc_type,grpc_service,grpc_method,grpc_code,transport}
//	grpc_client_msg_sent_total{grpc_type,grpc_service,grpc_method,transport}
//	grpc_client_msg_received_total{grpc_type,grpc_service,grpc_method,transport}
//	grpc_client_handling_seconds{grpc_type,grpc_service,grpc_method,transport} (histogram)
//
// Register it in a prometheus.Registerer to serve them. Outside calc's
// commands, a Go program gets the same over raw TCP by giving its
// interceptors to tcpconn.Options.UnaryInterceptors and
// StreamInterceptors, and over gRPC to grpc.WithChainUnaryInterceptor and
// grpc.WithChainStreamInterceptor.
func NewClientMetrics(transport string) *grpcprom.ClientMetrics {
	labels := prometheus.Labels{"transport": transport}
	return grpcprom.NewClientMetrics(
		grpcprom.WithClientCounterOptions(grpcprom.WithConstLabels(labels)),
		grpcprom.WithClientHandlingTimeHistogram(
			grpcprom.WithHistogramConstLabels(labels),
			grpcprom.WithHistogramBuckets(ClientHandlingBuckets),
		),
	)
}

// AddFlags registers --addr, --transport and --compression on fs, setting
// c's fields. The defaults of --addr and --transport come from the
// environment variables CALC_ADDR and CALC_TRANSPORT, read with getenv;
// --transport defaults to tcp without one.
func (c *Config) AddFlags(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.Addr, "addr", getenv("CALC_ADDR"), "server `address`: HOST:PORT, a list HOST:PORT,HOST:PORT or dns:///HOST:PORT, calls spread round robin (default "+defaultTCPAddr+" for tcp, "+defaultGRPCAddr+" for grpc; env CALC_ADDR)")
	def := getenv("CALC_TRANSPORT")
	if def == "" {
		def = "tcp"
	}
	fs.StringVar(&c.Transport, "transport", def, "tcp or grpc (env CALC_TRANSPORT)")
	fs.StringVar(&c.Compression, "compression", "none", "grpc message compression: none, gzip or snappy")
	fs.BoolFunc("retry", "retry calls that fail UNAVAILABLE (every calc method is pure): at most 5 attempts, 100 ms backoff ×1.6 up to 1 s, while a server is reachable; --retry=false keeps only the retries of calls a server never processed (default true)", func(s string) error {
		b, err := strconv.ParseBool(s)
		c.NoRetry = !b
		return err
	})
	c.TLS.addFlags(fs)
	fs.StringVar(&c.Token, "token", getenv("CALC_TOKEN"), "bearer `token` for servers with --auth-tokens (env CALC_TOKEN, which unlike a flag other users' ps cannot show)")
}

// Check validates c, sets an empty Addr to the transport's default and
// loads the TLS files.
func (c *Config) Check() error {
	var err error
	if c.tlsConfig, err = c.TLS.Config(); err != nil {
		return err
	}
	switch c.Transport {
	case "tcp":
		if c.Addr == "" {
			c.Addr = defaultTCPAddr
		}
		if c.Compression != "none" {
			return errors.New("--compression applies to --transport grpc only (raw TCP compresses large messages itself)")
		}
	case "grpc":
		if c.Addr == "" {
			c.Addr = defaultGRPCAddr
		}
		if c.Compression != "none" && c.Compression != "gzip" && c.Compression != "snappy" {
			return fmt.Errorf("unknown compression %q", c.Compression)
		}
	default:
		return fmt.Errorf("unknown transport %q (want tcp or grpc)", c.Transport)
	}
	return c.checkToken()
}

// Open opens a client of the servers cfg names, which cfg.Check has
// accepted, and returns it with a function that closes it. Over raw TCP
// it is a tcpconn.Client, which reconnects by itself after a server
// restarts and spreads calls over every server: Open waits, within ctx,
// until one connection is ready, and fails with the last connection
// error (a gRPC status) once every server has refused, or with ctx's
// status. Its calls then wait for a ready connection until their
// deadlines (tcpconn.ClientOptions.WaitForReady) and, unless NoRetry, are
// retried when they fail UNAVAILABLE (RetryIdempotent: calc's methods are
// pure). Over gRPC it connects lazily, on the first call; a list of
// servers is given to gRPC by a manual resolver, and a list or a dns:///
// name is balanced by gRPC's round_robin; unless NoRetry, an interceptor
// retries unary calls that fail UNAVAILABLE with raw TCP's numbers
// (retryUnary). wrap, if not nil, wraps every socket, as calc-bench does
// to count bytes. cfg.TracerProvider and cfg.ClientMetrics observe the
// calls on either transport.
func Open(ctx context.Context, cfg Config, wrap func(net.Conn) net.Conn) (grpc.ClientConnInterface, func(), error) {
	conn, closeConn, err := open(ctx, cfg, wrap)
	if err != nil || cfg.Token == "" {
		return conn, closeConn, err
	}
	return withToken{conn, "Bearer " + cfg.Token}, closeConn, nil
}

func open(ctx context.Context, cfg Config, wrap func(net.Conn) net.Conn) (grpc.ClientConnInterface, func(), error) {
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || wrap == nil {
			return nc, err
		}
		return wrap(nc), nil
	}
	if cfg.Transport == "tcp" {
		copts := tcpconn.Options{TLSConfig: cfg.tlsConfig, Codec: cfg.Codec, TracerProvider: cfg.TracerProvider, Propagator: cfg.Propagator}
		if m := cfg.ClientMetrics; m != nil {
			copts.UnaryInterceptors = []grpc.UnaryClientInterceptor{m.UnaryClientInterceptor()}
			copts.StreamInterceptors = []grpc.StreamClientInterceptor{m.StreamClientInterceptor()}
		}
		opts := tcpconn.ClientOptions{Conn: copts, WaitForReady: true, RetryIdempotent: !cfg.NoRetry}
		if wrap != nil {
			opts.Dial = dialer
		}
		if cfg.OnRetry != nil {
			opts.OnRetry = func(context.Context, string) { cfg.OnRetry() }
		}
		cc, err := tcpconn.NewClient(cfg.Addr, opts)
		if err != nil {
			return nil, nil, err
		}
		if err := cc.WaitReady(ctx); err != nil {
			cc.Close()
			return nil, nil, err
		}
		return cc, func() { cc.Close() }, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(grpcCredentials(cfg.tlsConfig)), grpc.WithContextDialer(dialer)}
	if cfg.Compression != "none" {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(cfg.Compression)))
	}
	if cfg.TracerProvider != nil {
		prop := cfg.Propagator
		if prop == nil {
			prop = rpctrace.Propagator()
		}
		opts = append(opts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(cfg.TracerProvider), otelgrpc.WithPropagators(prop))))
	}
	if m := cfg.ClientMetrics; m != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(m.UnaryClientInterceptor()), grpc.WithChainStreamInterceptor(m.StreamClientInterceptor()))
	}
	target := cfg.Addr
	if list := strings.Split(target, ","); len(list) > 1 {
		r := manual.NewBuilderWithScheme("calc-servers")
		var addrs []resolver.Address
		for _, a := range list {
			addrs = append(addrs, resolver.Address{Addr: strings.TrimSpace(a)})
		}
		r.InitialState(resolver.State{Addresses: addrs})
		target = r.Scheme() + ":///servers"
		opts = append(opts, grpc.WithResolvers(r))
	}
	if target != cfg.Addr || strings.HasPrefix(target, "dns:///") {
		opts = append(opts, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`))
	}
	if !cfg.NoRetry {
		opts = append(opts, grpc.WithChainUnaryInterceptor(retryUnary(cfg.OnRetry)))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, nil, err
	}
	return conn, func() { conn.Close() }, nil
}

// tracingFlushTimeout bounds the export of the last spans at exit.
const tracingFlushTimeout = 5 * time.Second

// TraceFromEnv turns on tracing as the standard OTEL_* environment
// variables ask (internal/otelenv: OTEL_TRACES_EXPORTER=otlp or an OTLP
// endpoint; the sampler, resource and exporter settings from the
// environment too), with service as the default service.name, by setting
// c.TracerProvider and c.Propagator; SDK errors go to logger. Without
// those variables it does nothing. It returns a function that exports
// the spans still buffered (for at most 5 s), to call before exiting.
func (c *Config) TraceFromEnv(ctx context.Context, service string, logger *slog.Logger) (flush func(), err error) {
	t, err := otelenv.Setup(ctx, service, logger)
	if err != nil || t == nil {
		return func() {}, err
	}
	c.TracerProvider, c.Propagator = t.Provider, t.Propagator
	return func() {
		fctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		if err := t.Shutdown(fctx); err != nil {
			logger.Warn("tracing: spans not exported", "error", err)
		}
	}, nil
}
