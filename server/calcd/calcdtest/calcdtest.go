// Package calcdtest starts a calcd, wired by calcd.New exactly as the
// command wires it, on loopback for a test, and dials it over every
// transport: raw TCP, gRPC, and the HTTP endpoint's Connect, gRPC-Web and
// REST (http.go). It sits above what it tests: nothing under server/ or
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
	// TCPAddr, GRPCAddr and HTTPAddr are the endpoints' addresses,
	// AdminAddr the admin port's.
	TCPAddr, GRPCAddr, HTTPAddr, AdminAddr string
}

// Start serves a calcd configured by cfg, HTTP and admin ports included,
// on free 127.0.0.1 ports; a nil cfg.Logger discards the logs. When the test ends the calcd is shut down
// and Serve must have returned ErrServerClosed.
func Start(tb testing.TB, cfg calcd.Config) *Servers {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := calcd.New(cfg)
	free := "127.0.0.1:0"
	l, err := calcd.ListenAddrs(calcd.Addrs{TCP: free, GRPC: free, HTTP: free, Admin: free})
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
	return &Servers{Server: srv, TCPAddr: l.TCP.Addr().String(), GRPCAddr: l.GRPC.Addr().String(),
		HTTPAddr: l.HTTP.Addr().String(), AdminAddr: l.Admin.Addr().String()}
}

// Transports are the names Clients uses, in a fixed order.
var Transports = []string{"tcp", "grpc"}

// Clients dials every endpoint and returns a client per transport name,
// as Conns; the connections close when the test ends.
func (s *Servers) Clients(tb testing.TB) map[string]calculatorv1.CalculatorServiceClient {
	tb.Helper()
	clients := map[string]calculatorv1.CalculatorServiceClient{}
	for tr, cc := range s.Conns(tb) {
		clients[tr] = calculatorv1.NewCalculatorServiceClient(cc)
	}
	return clients
}

// Conns dials every endpoint and returns a connection per transport name,
// for any generated client (health, reflection): Transports, and "http",
// a gRPC client of the HTTP endpoint (which serves gRPC beside Connect,
// gRPC-Web and REST: HTTPClient and RESTClient speak those). They close
// when the test ends.
func (s *Servers) Conns(tb testing.TB) map[string]grpc.ClientConnInterface {
	tb.Helper()
	return map[string]grpc.ClientConnInterface{
		"tcp":  s.DialTCP(tb, tcpconn.Options{}),
		"grpc": s.DialGRPC(tb),
		"http": DialGRPCAt(tb, s.HTTPAddr),
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
	return DialGRPCAt(tb, s.GRPCAddr)
}

// DialGRPCAt opens a plaintext gRPC client connection to addr (the gRPC
// port, or the HTTP port, which serves gRPC too), closed when the test
// ends.
func DialGRPCAt(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	gc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { gc.Close() })
	return gc
}
