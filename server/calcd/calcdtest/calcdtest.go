// Package calcdtest starts a calcd, wired by calcd.New exactly as the
// command wires it, on loopback for a test, and dials it over every
// transport. It sits above what it tests: nothing under server/ or
// internal/ imports it.
package calcdtest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calcd"
)

// Servers is a calcd serving on loopback.
type Servers struct {
	*calcd.Server
	// TCPAddr and GRPCAddr are the endpoints' addresses, AdminAddr the
	// admin port's.
	TCPAddr, GRPCAddr, AdminAddr string
}

// Start serves a calcd configured by cfg, admin port included, on free
// 127.0.0.1 ports; a nil cfg.Logger discards the logs. When the test ends the calcd is shut down
// and Serve must have returned ErrServerClosed.
func Start(tb testing.TB, cfg calcd.Config) *Servers {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := calcd.New(cfg)
	l, err := calcd.Listen("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, calcd.ErrServerClosed) {
			tb.Errorf("Serve returned %v", err)
		}
	})
	return &Servers{Server: srv, TCPAddr: l.TCP.Addr().String(), GRPCAddr: l.GRPC.Addr().String(), AdminAddr: l.Admin.Addr().String()}
}

// Transports are the names Clients uses, in a fixed order.
var Transports = []string{"tcp", "grpc"}

// Clients dials every endpoint and returns a client per transport name;
// the connections close when the test ends.
func (s *Servers) Clients(tb testing.TB) map[string]calculatorv1.CalculatorServiceClient {
	tb.Helper()
	clients := map[string]calculatorv1.CalculatorServiceClient{}
	for tr, cc := range s.Conns(tb) {
		clients[tr] = calculatorv1.NewCalculatorServiceClient(cc)
	}
	return clients
}

// Conns dials every endpoint and returns a connection per transport name,
// for any generated client (health, reflection); they close when the test
// ends.
func (s *Servers) Conns(tb testing.TB) map[string]grpc.ClientConnInterface {
	tb.Helper()
	return map[string]grpc.ClientConnInterface{
		"tcp":  s.DialTCP(tb, tcpconn.Options{}),
		"grpc": s.DialGRPC(tb),
	}
}

// DialTCP opens a raw TCP connection, closed when the test ends.
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

// DialGRPC opens a gRPC client connection, closed when the test ends.
func (s *Servers) DialGRPC(tb testing.TB) *grpc.ClientConn {
	tb.Helper()
	gc, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { gc.Close() })
	return gc
}
