package tcpconn_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	"github.com/calcrpc/calc/internal/wire"
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
