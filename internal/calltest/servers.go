package calltest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/grpcserver"
	"github.com/calcrpc/calc/server/interceptor"
	"github.com/calcrpc/calc/server/tcpserver"
)

// Servers is a gRPC server and a raw TCP server of one service on loopback,
// wired as calcd wires them.
type Servers struct {
	GRPCAddr string
	TCPAddr  string
	GRPC     *grpcserver.Server
	TCP      *tcpserver.Server
}

// Options configures Start.
type Options struct {
	// Service is the implementation to register; nil means none (tests of
	// the transports' own behaviour).
	Service calculatorv1.CalculatorServiceServer
	// TCP configures the raw TCP server; Start adds calc's interceptors in
	// front of the ones it names.
	TCP tcpserver.Options
	// Unary and Stream are extra interceptors on both servers, inside
	// calc's logging and recovery.
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	// Logger receives both servers' logs; nil discards them.
	Logger *slog.Logger
}

// Start serves opts.Service over both transports on 127.0.0.1 and shuts
// both down when the test ends.
func Start(tb testing.TB, opts Options) *Servers {
	tb.Helper()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g := grpcserver.New(grpcserver.Options{Logger: logger, UnaryInterceptors: opts.Unary, StreamInterceptors: opts.Stream})
	topts := opts.TCP
	topts.Logger = logger
	topts.UnaryInterceptors = append(interceptor.Unary(logger), append(opts.Unary, topts.UnaryInterceptors...)...)
	topts.StreamInterceptors = append(interceptor.Stream(logger), append(opts.Stream, topts.StreamInterceptors...)...)
	t := tcpserver.New(topts)
	if opts.Service != nil {
		calculatorv1.RegisterCalculatorServiceServer(g, opts.Service)
		calculatorv1.RegisterCalculatorServiceServer(t, opts.Service)
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	errc := make(chan error, 2)
	go func() { errc <- g.Serve(glis) }()
	go func() { errc <- t.Serve(tlis) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := errors.Join(g.Shutdown(ctx), t.Shutdown(ctx)); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		for range 2 {
			if err := <-errc; !errors.Is(err, grpcserver.ErrServerClosed) && !errors.Is(err, tcpserver.ErrServerClosed) {
				tb.Errorf("Serve returned %v", err)
			}
		}
	})
	return &Servers{GRPCAddr: glis.Addr().String(), TCPAddr: tlis.Addr().String(), GRPC: g, TCP: t}
}

// Transports are the names Clients uses, in a fixed order.
var Transports = []string{"tcp", "grpc"}

// Clients dials both servers and returns a client per transport name; the
// connections close when the test ends.
func (s *Servers) Clients(tb testing.TB) map[string]calculatorv1.CalculatorServiceClient {
	tb.Helper()
	tc := s.DialTCP(tb, tcpconn.Options{})
	gc, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { gc.Close() })
	return map[string]calculatorv1.CalculatorServiceClient{
		"tcp":  calculatorv1.NewCalculatorServiceClient(tc),
		"grpc": calculatorv1.NewCalculatorServiceClient(gc),
	}
}

// DialTCP opens a raw TCP connection to the servers, closed when the test
// ends.
func (s *Servers) DialTCP(tb testing.TB, opts tcpconn.Options) *tcpconn.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tcpconn.Dial(ctx, s.TCPAddr, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
