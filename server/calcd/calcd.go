// Package calcd wires a calcd: the one CalculatorService, calc's
// interceptors (access log and panic recovery), grpc.health.v1 with one
// health state and server reflection (v1 and v1alpha, answering with the
// schema's comments), all on every transport: the raw TCP endpoint
// (server/tcpserver) and the gRPC endpoint (server/grpcserver); and the
// drain that stops them together.
// The calcd command is flags and signals around it; tests start the very
// same wiring (calcdtest).
package calcd

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/schema"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/endpoint"
	"github.com/calcrpc/calc/server/grpcserver"
	"github.com/calcrpc/calc/server/interceptor"
	"github.com/calcrpc/calc/server/tcpserver"
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
	// interceptors and InlineMethods are set by New.
	TCP tcpserver.Options
	// GRPC holds the gRPC endpoint's limits and keepalive settings. Its
	// Logger and interceptors are set by New.
	GRPC grpcserver.Options
	// UnaryInterceptors and StreamInterceptors run on every transport,
	// inside calc's access log and recovery, first outermost.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
}

// Server is a calcd: one service on every transport.
type Server struct {
	// TCP is the raw TCP endpoint.
	TCP *tcpserver.Server
	// GRPC is the gRPC endpoint.
	GRPC   *grpcserver.Server
	health *health.Server
	logger *slog.Logger
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
	gopts := cfg.GRPC
	gopts.Logger = logger.With("transport", "grpc")
	gopts.UnaryInterceptors = cfg.UnaryInterceptors
	gopts.StreamInterceptors = cfg.StreamInterceptors
	g := grpcserver.New(gopts) // installs the access log and recovery itself

	topts := cfg.TCP
	topts.Logger = logger.With("transport", "tcp")
	topts.UnaryInterceptors = append(interceptor.Unary(topts.Logger), cfg.UnaryInterceptors...)
	topts.StreamInterceptors = append(interceptor.Stream(topts.Logger), cfg.StreamInterceptors...)
	topts.InlineMethods = calculator.CheapMethods
	t := tcpserver.New(topts)

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
	for _, e := range []transport{g, t} {
		calculatorv1.RegisterCalculatorServiceServer(e, svc)
		healthpb.RegisterHealthServer(e, hs)
		ropts := reflection.ServerOptions{Services: e, DescriptorResolver: descriptors}
		reflectionv1.RegisterServerReflectionServer(e, reflection.NewServerV1(ropts))
		reflectionv1alpha.RegisterServerReflectionServer(e, reflection.NewServer(ropts))
	}
	hs.SetServingStatus(calculatorv1.CalculatorService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return &Server{TCP: t, GRPC: g, health: hs, logger: logger}
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
}

// Listen opens Listeners on the given addresses.
func Listen(tcpAddr, grpcAddr string) (Listeners, error) {
	t, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		return Listeners{}, err
	}
	g, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Close()
		return Listeners{}, err
	}
	return Listeners{TCP: t, GRPC: g}, nil
}

// Serve serves every endpoint on its listener. It returns the first
// endpoint's failure (the caller then calls Shutdown to stop the others),
// or ErrServerClosed once Shutdown has stopped them all.
func (s *Server) Serve(l Listeners) error {
	errc := make(chan error, 2)
	go func() { errc <- s.TCP.Serve(l.TCP) }()
	go func() { errc <- s.GRPC.Serve(l.GRPC) }()
	for range 2 {
		if err := <-errc; !errors.Is(err, ErrServerClosed) {
			return err
		}
	}
	return ErrServerClosed
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = endpoint.ErrServerClosed

// Shutdown drains every endpoint at once: health reports NOT_SERVING on
// every transport (a Watch gets the change), the
// listeners close, raw TCP connections get GOAWAY and gRPC connections an
// HTTP/2 GOAWAY, and calls in flight, streams included, may finish. When
// ctx ends first, what is left is ended with UNAVAILABLE: raw TCP calls
// get a STATUS UNAVAILABLE, gRPC connections are closed (which their
// clients see as UNAVAILABLE). That is the designed end of a drain, logged
// as a warning, and Shutdown returns nil for it; it returns an error only
// when the drain failed: a handler still running after its calls were
// ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.Shutdown()
	done := make(chan error, 2)
	go func() { done <- s.TCP.Shutdown(ctx) }()
	go func() { done <- s.GRPC.Shutdown(ctx) }()
	var failed []error
	cut := false
	for range 2 {
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
	return errors.Join(failed...)
}
