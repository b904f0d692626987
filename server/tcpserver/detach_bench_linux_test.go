package tcpserver

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calculator"
)

// parkedConn starts a server, makes one call on a new connection and
// returns the server's parker and the connection once it is parked.
func parkedConn(b *testing.B) (*parker, *conn) {
	srv := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(lis)
	b.Cleanup(func() { _ = srv.Shutdown(b.Context()) })
	nc, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1})
	h := wire.RequestHeader{MethodRef: 1, MethodName: calculatorv1.CalculatorService_Calculate_FullMethodName}
	if _, err := nc.Write(wire.AppendRequest(wire.AppendPreface(nil), 1, &h, msg, 0)); err != nil {
		b.Fatal(err)
	}
	p := srv.idle.(*parker)
	deadline := time.Now().Add(10 * time.Second)
	for p.parked() == 0 {
		if time.Now().After(deadline) {
			b.Fatal("the connection did not park")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		return p, c
	}
	panic("unreachable")
}

// BenchmarkParkCycle is the parker's own work to wake a parked connection
// and park it again (the goroutine it starts in between is not included).
// BenchmarkDetachCycle adds a detach and a re-attach: their difference is
// what a wake costs a detached connection more than a parked one.
func BenchmarkParkCycle(b *testing.B) { benchCycle(b, false) }

func BenchmarkDetachCycle(b *testing.B) { benchCycle(b, true) }

func benchCycle(b *testing.B, detach bool) {
	p, c := parkedConn(b)
	b.ReportAllocs()
	for b.Loop() {
		p.mu.Lock()
		if detach {
			p.detachLocked(c)
			if c.flags.Load()&flagDetached == 0 {
				b.Fatal("not detached")
			}
		}
		p.unregisterLocked(c)
		if detach {
			p.reattachLocked(c)
		}
		p.mu.Unlock()
		if !p.tryPark(c) {
			b.Fatal("not parked again")
		}
	}
}
