package tcpserver

import (
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/busypoll"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calculator"
)

// TestConnSizeClass: a conn fits a 384-byte allocation (the size class
// below 416), since thousands of idle connections hold one.
func TestConnSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 384 {
		t.Errorf("unsafe.Sizeof(conn{}) = %d, over the 384-byte size class: every connection now takes 416 bytes", n)
	}
}

// TestIdleConnectionDoesNotStopPolling: a connection that has just served
// a burst of 8 calls polls for the next one (its Poller records the empty
// poll), alone and beside a connection that sits idle in a goroutine (one
// that cannot be parked: a TLS connection, any connection off Linux, here
// a net.Pipe). An idle connection is not busy (Server.serving): with
// GOMAXPROCS 2 one busy connection is all that may poll.
func TestIdleConnectionDoesNotStopPolling(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	for _, idle := range []int{0, 1} {
		t.Run(map[int]string{0: "alone", 1: "beside an idle unparkable connection"}[idle], func(t *testing.T) {
			srv := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(lis)
			t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
			for range idle {
				pc, ps := net.Pipe()
				t.Cleanup(func() { pc.Close() })
				go srv.ServeConn(ps, nil)
				go func() { _, _ = pc.Write(wire.AppendPreface(nil)); _, _ = io.Copy(io.Discard, pc) }()
			}
			waitUntil(t, func() bool { return srv.Stats().ConnectionsOpen == idle })

			nc, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			rd := wire.NewReader(nc, 0)
			if _, err := nc.Write(wire.AppendPreface(nil)); err != nil {
				t.Fatal(err)
			}
			if f, err := rd.ReadFrame(); err != nil || f.Kind != wire.KindSettings {
				t.Fatalf("handshake: %v %v", f.Kind, err)
			}
			msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1})
			h := wire.RequestHeader{MethodRef: 1, MethodName: calculatorv1.CalculatorService_Calculate_FullMethodName}
			var b []byte
			for id := uint32(1); id <= 8; id++ {
				b = wire.AppendRequest(b, id, &h, msg, 0)
			}
			if _, err := nc.Write(b); err != nil {
				t.Fatal(err)
			}
			for got := 0; got < 8; {
				f, err := rd.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if f.Kind == wire.KindResponse {
					got++
				}
			}
			// Quiet now: the connection polls (empty), reads hot, waits warm
			// and parks; once parked, its Poller can be read under p.mu.
			p := srv.idle.(*parker)
			waitUntil(t, func() bool { return p.parked() == 1 })
			p.mu.Lock()
			var polled bool
			for _, c := range p.conns {
				polled = c.poller != (busypoll.Poller{})
			}
			p.mu.Unlock()
			if !polled {
				t.Errorf("the connection never polled after a burst of 8 calls (beside %d idle connection(s))", idle)
			}
		})
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}
