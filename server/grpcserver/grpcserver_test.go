package grpcserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/grpcserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve starts a Server with opts on 127.0.0.1 and shuts it down when the
// test ends.
func serve(t *testing.T, opts grpcserver.Options) string {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := grpcserver.New(opts)
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, grpcserver.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// client dials addr from the loopback source address from.
func client(t *testing.T, addr, from string) (calculatorv1.CalculatorServiceClient, *grpc.ClientConn) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return calculatorv1.NewCalculatorServiceClient(cc), cc
}

func call(c calculatorv1.CalculatorServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	r, err := c.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	if err == nil && r.GetResult() != 5 {
		return errors.New("wrong result")
	}
	return err
}

// TestConnectionLimits: past MaxConnectionsPerAddr from one address, or
// MaxConnections in all, a connection is closed on accept and its call
// fails with UNAVAILABLE; clients already connected are unaffected, and a
// place frees when a connection closes.
func TestConnectionLimits(t *testing.T) {
	addr := serve(t, grpcserver.Options{MaxConnectionsPerAddr: 2, MaxConnections: 3})
	a1, cc1 := client(t, addr, "127.0.0.1")
	a2, _ := client(t, addr, "127.0.0.1")
	for i, c := range []calculatorv1.CalculatorServiceClient{a1, a2} {
		if err := call(c); err != nil {
			t.Fatalf("client %d within the limits: %v", i+1, err)
		}
	}
	a3, _ := client(t, addr, "127.0.0.1")
	if err := call(a3); status.Code(err) != codes.Unavailable {
		t.Fatalf("a third connection from 127.0.0.1: %v, want UNAVAILABLE", err)
	}
	b1, _ := client(t, addr, "127.0.0.2")
	if err := call(b1); err != nil {
		t.Fatalf("a first connection from 127.0.0.2: %v", err)
	}
	b2, _ := client(t, addr, "127.0.0.2")
	if err := call(b2); status.Code(err) != codes.Unavailable {
		t.Fatalf("a fourth connection in all: %v, want UNAVAILABLE", err)
	}
	for i, c := range []calculatorv1.CalculatorServiceClient{a1, a2, b1} {
		if err := call(c); err != nil {
			t.Fatalf("connected client %d after the refusals: %v", i+1, err)
		}
	}
	cc1.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a4, _ := client(t, addr, "127.0.0.1") // a new client: a3 waits out grpc-go's reconnect backoff
		if call(a4) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no place freed after a connection closed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHandshakeTimeout: a socket that never completes the HTTP/2
// handshake is closed after HandshakeTimeout.
func TestHandshakeTimeout(t *testing.T) {
	addr := serve(t, grpcserver.Options{HandshakeTimeout: 200 * time.Millisecond})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	for {
		if _, err = nc.Read(make([]byte, 256)); err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("silent socket: %v after %v, want closed by the server", err, time.Since(start))
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return nc, err
}

// TestMaxConnectionAge: past MaxConnectionAge a client's connection is
// sent GOAWAY and the client opens a new one, with no call failing.
func TestMaxConnectionAge(t *testing.T) {
	srv := grpcserver.New(grpcserver.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxConnectionAge: 100 * time.Millisecond})
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &countingListener{Listener: inner}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-served
	}()
	c, _ := client(t, lis.Addr().String(), "127.0.0.1")
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; lis.accepted.Load() < 3; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections after %d calls, want a third: connections are not aged out", lis.accepted.Load(), i)
		}
		if err := call(c); err != nil {
			t.Fatalf("call %d across connection ageing: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
