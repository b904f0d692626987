// Package grpcserver is calc's gRPC endpoint: a grpc.Server with panic
// recovery and the access log always installed, gzip and snappy encodings,
// connection limits per address and server-wide, keepalive enforcement, a max
// receive size and stream limits per connection (announced as HTTP/2
// MAX_CONCURRENT_STREAMS) and server-wide, optionally TLS, behind the same
// Serve / Shutdown lifecycle as the raw TCP server.
package grpcserver

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip grpc-encoding
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	_ "github.com/calcrpc/calc/internal/grpcsnappy" // registers the snappy grpc-encoding
	"github.com/calcrpc/calc/server/endpoint"
	"github.com/calcrpc/calc/server/interceptor"
)

// ErrServerClosed is returned by Serve after Shutdown. It is
// endpoint.ErrServerClosed, the one every calc endpoint returns.
var ErrServerClosed = endpoint.ErrServerClosed

// Defaults for the zero Options.
const (
	DefaultMaxConcurrentStreams  = 100
	DefaultMaxStreams            = 10000
	DefaultMaxRecvMsgSize        = 4 << 20
	DefaultKeepaliveMinTime      = 10 * time.Second
	DefaultMaxConnections        = 10000
	DefaultMaxConnectionsPerAddr = 1024
	DefaultHandshakeTimeout      = 10 * time.Second
	DefaultKeepaliveTime         = 2 * time.Minute
	DefaultKeepaliveTimeout      = 20 * time.Second
)

// Options configures a Server. The zero value means the documented defaults.
type Options struct {
	// Logger receives the access log and panics; nil means slog.Default().
	Logger *slog.Logger
	// AccessLogEvery samples the access log: one call in AccessLogEvery is
	// logged at Info, the others at Debug; 0 logs failed calls at Info and
	// successful ones at Debug (interceptor.UnaryLogging).
	AccessLogEvery int
	// MaxConcurrentStreams caps the calls (unary or streaming: each is an
	// HTTP/2 stream) open on one connection, announced to clients in HTTP/2
	// SETTINGS; 0 means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams int
	// MaxStreams caps the streaming calls open on the whole server; one
	// past it fails with RESOURCE_EXHAUSTED. 0 means DefaultMaxStreams.
	MaxStreams int
	// MaxConnections caps the connections open on the endpoint; one past
	// it is closed as soon as it is accepted, before the HTTP/2 handshake
	// (the client sees UNAVAILABLE). 0 means DefaultMaxConnections.
	MaxConnections int
	// MaxConnectionsPerAddr caps the connections from one remote IP
	// address, closed in the same way. Behind a proxy every client shares
	// the proxy's address: raise it there. 0 means
	// DefaultMaxConnectionsPerAddr.
	MaxConnectionsPerAddr int
	// HandshakeTimeout bounds a new connection's HTTP/2 handshake
	// (grpc.ConnectionTimeout, 120 s in grpc-go); 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxRecvMsgSize is the largest request message accepted, after
	// decompression; 0 means DefaultMaxRecvMsgSize (4 MiB). Larger messages
	// fail with RESOURCE_EXHAUSTED.
	MaxRecvMsgSize int
	// KeepaliveMinTime is the shortest interval at which clients may ping;
	// a client pinging more often is sent GOAWAY (too_many_pings). 0 means
	// DefaultKeepaliveMinTime (10 s).
	KeepaliveMinTime time.Duration
	// MaxConnectionAge is how long a connection may live before the server
	// sends it GOAWAY (±10%), so that clients reconnect and rebalance;
	// 0 means no limit (keepalive.ServerParameters.MaxConnectionAge).
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace is how long calls may go on after that GOAWAY
	// before the connection is closed; 0 means as long as they need.
	MaxConnectionAgeGrace time.Duration
	// KeepaliveTime is how long a connection may be silent before the server
	// pings it; 0 means DefaultKeepaliveTime (2 min).
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the server waits for a ping's answer
	// before closing the connection; 0 means DefaultKeepaliveTimeout (20 s).
	KeepaliveTimeout time.Duration
	// UnaryInterceptors run inside calc's logging and recovery
	// interceptors, first outermost.
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// StreamInterceptors run inside calc's stream logging and recovery,
	// first outermost.
	StreamInterceptors []grpc.StreamServerInterceptor
	// OuterUnaryInterceptors and OuterStreamInterceptors run outside
	// everything calc installs, first outermost: they see a panic as the
	// INTERNAL status recovery made of it, and a stream past MaxStreams as
	// its RESOURCE_EXHAUSTED (metrics go here).
	OuterUnaryInterceptors  []grpc.UnaryServerInterceptor
	OuterStreamInterceptors []grpc.StreamServerInterceptor
	// StatsHandlers see every connection and call, outside every
	// interceptor (tracing: otelgrpc.NewServerHandler).
	StatsHandlers []stats.Handler
	// TLSConfig, when set, serves gRPC over TLS (credentials.NewTLS) with
	// a clone of it requiring TLS 1.3 and ALPN "h2"; the TLS handshake is
	// part of HandshakeTimeout. nil means plaintext HTTP/2.
	TLSConfig *tls.Config
}

// Server is the gRPC endpoint. It implements grpc.ServiceRegistrar and
// reflection's ServiceInfoProvider.
type Server struct {
	opts     Options // for the listener's limits
	grpc     *grpc.Server
	shutdown atomic.Bool
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	streams := &streamBudget{limit: int64(orDefault(opts.MaxStreams, DefaultMaxStreams))}
	unary := slices.Concat(opts.OuterUnaryInterceptors, interceptor.Unary(logger, opts.AccessLogEvery), opts.UnaryInterceptors)
	stream := slices.Concat(opts.OuterStreamInterceptors, []grpc.StreamServerInterceptor{streams.intercept}, interceptor.Stream(logger, opts.AccessLogEvery), opts.StreamInterceptors)
	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxConcurrentStreams(uint32(orDefault(opts.MaxConcurrentStreams, DefaultMaxConcurrentStreams))),
		grpc.ConnectionTimeout(orDefault(opts.HandshakeTimeout, DefaultHandshakeTimeout)),
		grpc.MaxRecvMsgSize(orDefault(opts.MaxRecvMsgSize, DefaultMaxRecvMsgSize)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             orDefault(opts.KeepaliveMinTime, DefaultKeepaliveMinTime),
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    orDefault(opts.KeepaliveTime, DefaultKeepaliveTime),
			Timeout: orDefault(opts.KeepaliveTimeout, DefaultKeepaliveTimeout),
			// grpc-go reads 0 as infinity for both.
			MaxConnectionAge:      opts.MaxConnectionAge,
			MaxConnectionAgeGrace: opts.MaxConnectionAgeGrace,
		}),
	}
	for _, h := range opts.StatsHandlers {
		sopts = append(sopts, grpc.StatsHandler(h))
	}
	if opts.TLSConfig != nil {
		// credentials.NewTLS clones the config again and sets "h2" in the
		// ones GetConfigForClient returns too.
		cfg := opts.TLSConfig.Clone()
		cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS13)
		cfg.NextProtos = []string{"h2"}
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	g := grpc.NewServer(sopts...)
	s := &Server{opts: opts, grpc: g}
	return s
}

// RegisterService registers a service implementation, as grpc.Server does.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
}

// GetServiceInfo returns the registered services and their methods, as
// grpc.Server does (server reflection lists them).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo { return s.grpc.GetServiceInfo() }

// ServeHTTP serves one gRPC call that arrived through net/http rather than
// on a listener of the Server's own (grpc.Server.ServeHTTP): the HTTP
// endpoint (server/httpserver) hands it the calls it has transcoded into
// gRPC. The interceptors, MaxRecvMsgSize and MaxStreams apply as to any
// call; connection limits, keepalive and TLS are the HTTP server's.
// Shutdown of such a Server cancels the calls still in flight at once
// (grpc-go's handler transport cannot drain), so drain the HTTP server
// first.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.grpc.ServeHTTP(w, r) }

// Serve accepts connections on lis, within MaxConnections and
// MaxConnectionsPerAddr, until Shutdown, then returns ErrServerClosed; any
// other error is an accept failure.
func (s *Server) Serve(lis net.Listener) error {
	lis = endpoint.LimitListener(lis, orDefault(s.opts.MaxConnections, DefaultMaxConnections), orDefault(s.opts.MaxConnectionsPerAddr, DefaultMaxConnectionsPerAddr))
	err := s.grpc.Serve(lis)
	if s.shutdown.Load() {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops accepting,
// lets in-flight calls complete and then closes every connection. If ctx
// ends first the remaining calls are cancelled and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		return ctx.Err()
	}
}

// streamBudget counts the streaming calls open on the server.
type streamBudget struct {
	limit int64
	open  atomic.Int64
}

// intercept refuses a stream past the budget with RESOURCE_EXHAUSTED.
func (b *streamBudget) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if b.open.Add(1) > b.limit {
		b.open.Add(-1)
		return status.Errorf(codes.ResourceExhausted, "the server has %d streams open, its limit", b.limit)
	}
	defer b.open.Add(-1)
	return handler(srv, ss)
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
