package tcpserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calccodec"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/tcpserver"
)

// tcpconnOptions are the client options of the tests' normal calls.
var tcpconnOptions = tcpconn.Options{}

// testServer is a raw TCP server of the calculator on loopback.
type testServer struct {
	TCP     *tcpserver.Server
	TCPAddr string
}

// start serves svc (nil: the calculator, with its cheap methods inline and
// its codec, as calcd runs it) on loopback with opts and no interceptors unless opts
// names some; when the test ends it shuts the server down and checks that
// no goroutine leaked.
func start(t testing.TB, opts tcpserver.Options) *testServer {
	return startService(t, opts, nil)
}

func startService(t testing.TB, opts tcpserver.Options, svc calculatorv1.CalculatorServiceServer) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startServiceOn(t, opts, svc, lis)
}

// startServiceOn is startService serving on lis, a loopback listener.
func startServiceOn(t testing.TB, opts tcpserver.Options, svc calculatorv1.CalculatorServiceServer, lis net.Listener) *testServer {
	t.Helper()
	before := goleak.IgnoreCurrent()                   // a benchmark's parents, say
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // registered first, so it runs last
	if svc == nil {
		svc = calculator.New()
		opts.InlineMethods = calculator.CheapMethods
		opts.Codec = calccodec.Codec{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := tcpserver.New(opts)
	calculatorv1.RegisterCalculatorServiceServer(srv, svc)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, tcpserver.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return &testServer{TCP: srv, TCPAddr: lis.Addr().String()}
}

// DialTCP opens a client connection, closed when the test ends.
func (s *testServer) DialTCP(t *testing.T, opts tcpconn.Options) *tcpconn.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tcpconn.Dial(ctx, s.TCPAddr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
