package tcpserver

import (
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calculator"
)

// parkedConn starts a server on a listener with lc, makes one call on a
// new connection and returns the server's parker and the connection once
// it is parked.
func parkedConn(b testing.TB, lc net.ListenConfig) (*parker, *conn) {
	srv := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	lis, err := lc.Listen(b.Context(), "tcp", "127.0.0.1:0")
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
	p, c := parkedConn(b, net.ListenConfig{})
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

// TestReattachKeepsKeepAlive checks that a connection re-attached after a
// detach has its listener's TCP keepalive, not the default net.FileConn
// gives it.
func TestReattachKeepsKeepAlive(t *testing.T) {
	want := net.KeepAliveConfig{Enable: true, Idle: 300 * time.Second, Interval: 20 * time.Second, Count: 4}
	p, c := parkedConn(t, net.ListenConfig{KeepAliveConfig: want})
	p.mu.Lock()
	p.detachLocked(c)
	detached := c.flags.Load()&flagDetached != 0
	p.wakeLocked(c)
	nc := c.nc
	p.mu.Unlock()
	if !detached {
		t.Fatal("not detached")
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got net.KeepAliveConfig
	if cerr := rc.Control(func(fd uintptr) { got, err = keepAlive(int(fd)) }); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	if got != want {
		t.Fatalf("keepalive after re-attaching: %+v, want %+v", got, want)
	}
}
