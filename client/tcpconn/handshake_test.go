package tcpconn_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calculator"
)

// peer serves on loopback until the test ends: on every connection it
// reads the client's preface, signals prefaces, writes reply and then reads
// until the client closes.
func peer(t *testing.T, reply []byte) (addr string, prefaces <-chan struct{}) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := io.ReadFull(nc, make([]byte, wire.PrefaceSize)); err != nil {
					return
				}
				got <- struct{}{}
				if _, err := nc.Write(reply); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, nc)
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String(), got
}

// TestDialContext checks that a dial or handshake ended by its context
// fails with the context's code, DEADLINE_EXCEEDED or CANCELLED, whether
// the dial or the handshake was under way.
func TestDialContext(t *testing.T) {
	tests := []struct {
		name string
		// ctx returns the context for Dial; prefaces signals each preface
		// the silent server reads.
		ctx  func(prefaces <-chan struct{}) (context.Context, context.CancelFunc)
		want codes.Code
	}{
		{"deadline passed before dialling", func(<-chan struct{}) (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Unix(1, 0))
		}, codes.DeadlineExceeded},
		{"1ns timeout", func(<-chan struct{}) (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Nanosecond)
		}, codes.DeadlineExceeded},
		{"cancelled before dialling", func(<-chan struct{}) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, codes.Canceled},
		{"deadline passes in the handshake", func(<-chan struct{}) (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, codes.DeadlineExceeded},
		{"cancelled in the handshake", func(prefaces <-chan struct{}) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-prefaces
				cancel()
			}()
			return ctx, cancel
		}, codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, prefaces := peer(t, nil) // a server that never answers
			ctx, cancel := tt.ctx(prefaces)
			defer cancel()
			conn, err := tcpconn.Dial(ctx, addr, tcpconn.Options{})
			if err == nil {
				conn.Close()
			}
			if status.Code(err) != tt.want {
				t.Fatalf("Dial: %v; want %v", err, tt.want)
			}
		})
	}
}

// TestNewConnDeadline checks NewConn on a connection whose peer reads
// nothing, so that the deadline passes while the preface is written.
func TestNewConnDeadline(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := tcpconn.NewConn(ctx, client, tcpconn.Options{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("NewConn: %v; want DEADLINE_EXCEEDED", err)
	}
	client.Close()
}

// grpcServer serves the calculator over gRPC on loopback until the test
// ends and returns its address.
func grpcServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	calculatorv1.RegisterCalculatorServiceServer(gs, calculator.New())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String()
}

// TestDialHTTPServer checks that Dial recognises a server that answers in
// HTTP and fails at once with UNAVAILABLE, and that a calc server's first
// frame is read without taking any byte of the next.
func TestDialHTTPServer(t *testing.T) {
	settings := wire.AppendFrame(nil, wire.KindSettings, 0, 0, wire.AppendSettings(nil, wire.Settings{CompressThreshold: 256}))
	goAway := wire.AppendFrame(nil, wire.KindGoAway, 0, 0, wire.AppendGoAway(nil, 0, &spb.Status{Code: int32(codes.Unavailable), Message: "draining"}))
	tests := []struct {
		name  string
		addr  func(t *testing.T) string
		http2 bool   // the error matches ErrHTTP2Server
		msg   string // in the error's message
	}{
		{"grpc-go server", grpcServer, true, "speaks HTTP/2, not calc's raw TCP protocol: this looks like a gRPC port"},
		{"an empty HTTP/2 SETTINGS frame and nothing more", func(t *testing.T) string {
			addr, _ := peer(t, []byte{0, 0, 0, 0x04, 0, 0, 0, 0, 0})
			return addr
		}, true, "speaks HTTP/2"},
		{"HTTP/1 response", func(t *testing.T) string {
			addr, _ := peer(t, []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
			return addr
		}, false, "answered with an HTTP/1 response, not calc's raw TCP protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Waiting for the deadline would give DEADLINE_EXCEEDED.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			conn, err := tcpconn.Dial(ctx, tt.addr(t), tcpconn.Options{})
			if err == nil {
				conn.Close()
			}
			if status.Code(err) != codes.Unavailable || errors.Is(err, tcpconn.ErrHTTP2Server) != tt.http2 || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("Dial: %v; want UNAVAILABLE with %q (ErrHTTP2Server: %v)", err, tt.msg, tt.http2)
			}
		})
	}

	t.Run("calc server's SETTINGS then GOAWAY in one write", func(t *testing.T) {
		addr, _ := peer(t, append(settings, goAway...))
		conn, err := tcpconn.Dial(context.Background(), addr, tcpconn.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = calculatorv1.NewCalculatorServiceClient(conn).Calculate(context.Background(), add)
		if !errors.Is(err, tcpconn.ErrNotProcessed) {
			t.Fatalf("call after GOAWAY: %v; want it not processed", err)
		}
	})
}

// TestKeepaliveTimeout: a server that completes the handshake and then
// answers nothing, pings included, has its connection failed at
// KeepaliveTimeout after a ping, and the call waiting on it ends with
// UNAVAILABLE naming the keepalive.
func TestKeepaliveTimeout(t *testing.T) {
	addr, _ := peer(t, wire.AppendFrame(nil, wire.KindSettings, 0, 0, wire.AppendSettings(nil, wire.Settings{})))
	c, err := tcpconn.Dial(context.Background(), addr, tcpconn.Options{KeepaliveInterval: 20 * time.Millisecond, KeepaliveTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = calculatorv1.NewCalculatorServiceClient(c).Calculate(ctx, add)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "keepalive") {
		t.Fatalf("a call to a server gone silent: %v; want UNAVAILABLE from the keepalive", err)
	}
}
