// Package grpcserver is calc's gRPC endpoint: a grpc.Server with the shared
// interceptors, grpc.health.v1, server reflection, gzip and snappy
// encodings, keepalive enforcement and a max receive size, behind the same
// Serve / Shutdown lifecycle as the raw TCP server.
package grpcserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip grpc-encoding
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	_ "github.com/calcrpc/calc/internal/grpcsnappy" // registers the snappy grpc-encoding
	"github.com/calcrpc/calc/server/interceptor"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("grpcserver: server closed")

// Defaults for the zero Options.
const (
	DefaultMaxRecvMsgSize   = 4 << 20
	DefaultKeepaliveMinTime = 10 * time.Second
	DefaultKeepaliveTime    = 2 * time.Minute
	DefaultKeepaliveTimeout = 20 * time.Second
)

// Options configures a Server. The zero value means the documented defaults.
type Options struct {
	// Logger receives the access log and panics; nil means slog.Default().
	Logger *slog.Logger
	// MaxRecvMsgSize is the largest request message accepted, after
	// decompression; 0 means DefaultMaxRecvMsgSize (4 MiB). Larger messages
	// fail with RESOURCE_EXHAUSTED.
	MaxRecvMsgSize int
	// KeepaliveMinTime is the shortest interval at which clients may ping;
	// a client pinging more often is sent GOAWAY (too_many_pings). 0 means
	// DefaultKeepaliveMinTime (10 s).
	KeepaliveMinTime time.Duration
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
}

// Server is the gRPC endpoint. It implements grpc.ServiceRegistrar; every
// registered service is reported SERVING by the health service until
// Shutdown.
type Server struct {
	grpc     *grpc.Server
	health   *health.Server
	shutdown atomic.Bool
}

// New returns a Server configured by opts, with health and reflection
// registered.
func New(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(append(interceptor.Unary(logger), opts.UnaryInterceptors...)...),
		grpc.ChainStreamInterceptor(append(interceptor.Stream(logger), opts.StreamInterceptors...)...),
		grpc.MaxRecvMsgSize(orDefault(opts.MaxRecvMsgSize, DefaultMaxRecvMsgSize)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             orDefault(opts.KeepaliveMinTime, DefaultKeepaliveMinTime),
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    orDefault(opts.KeepaliveTime, DefaultKeepaliveTime),
			Timeout: orDefault(opts.KeepaliveTimeout, DefaultKeepaliveTimeout),
		}),
	)
	s := &Server{grpc: g, health: health.NewServer()}
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
	return s
}

// RegisterService registers a service implementation, as grpc.Server does,
// and marks it SERVING in the health service.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
	s.health.SetServingStatus(desc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// Serve accepts connections on lis until Shutdown, then returns
// ErrServerClosed; any other error is an accept failure.
func (s *Server) Serve(lis net.Listener) error {
	err := s.grpc.Serve(lis)
	if s.shutdown.Load() {
		return ErrServerClosed
	}
	return err
}

// Shutdown reports NOT_SERVING on the health service, stops accepting,
// lets in-flight calls complete and then closes every connection. If ctx
// ends first the remaining calls are cancelled and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.health.Shutdown()
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

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
