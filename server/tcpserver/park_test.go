//go:build linux

package tcpserver_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// add sends Calculate(ADD, a, 1) as call id on a raw connection and checks
// the answer.
func add(t *testing.T, nc net.Conn, rd *wire.Reader, id uint32, a int64) {
	t.Helper()
	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: a, Rhs: 1})
	if _, err := nc.Write(request(id, calculate, 0, msg)); err != nil {
		t.Fatal(err)
	}
	f, err := rd.ReadFrame()
	if err != nil || f.Kind != wire.KindResponse || f.ID != id {
		t.Fatalf("call %d: %v %v %v", id, f.Kind, f.ID, err)
	}
	var resp calculatorv1.CalculateResponse
	if err := proto.Unmarshal(f.Payload, &resp); err != nil || resp.GetResult() != a+1 {
		t.Fatalf("call %d: %v %v", id, &resp, err)
	}
}

// TestIdleConnectionsHoldNoGoroutine checks that on Linux an idle
// connection is parked: the server runs no goroutine for it, wakes it when
// a request arrives, notices when its peer leaves, and GOAWAYs it on
// Shutdown. It runs twice: as parked, and detached from Go's netpoller as
// well (the parker does it at once here), where a call re-attaches the
// connection and so does Shutdown's GOAWAY, and no descriptor is left
// behind.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	t.Run("parked", func(t *testing.T) { testIdleConnections(t, false) })
	t.Run("detached", func(t *testing.T) {
		tcpserver.SetDetachAfter(t, 0)
		testIdleConnections(t, true)
	})
}

func testIdleConnections(t *testing.T, detach bool) {
	files := openFiles(t)
	srv := start(t, tcpserver.Options{})
	const n = 50
	base := runtime.NumGoroutine()
	// idle waits until the server holds want connections idle: no
	// goroutine for any (the parker's one only), each detached if detach.
	idle := func(want int, why string) {
		t.Helper()
		waitGoroutines(t, base+1, why)
		if detach {
			waitFor(t, func() bool { return tcpserver.Detached(srv.TCP) == want })
		}
	}
	type client struct {
		nc net.Conn
		rd *wire.Reader
	}
	clients := make([]client, n)
	for i := range clients {
		nc, rd := dial(t, srv.TCPAddr, true)
		clients[i] = client{nc, rd}
		add(t, nc, rd, 1, int64(i))
	}
	idle(n, "after one call each")
	for i, c := range clients {
		add(t, c.nc, c.rd, 2, int64(i)) // wakes the connection
	}
	idle(n, "after a second call each")

	// Peers that leave are noticed while parked: their connections close,
	// and a third call on each of the others still works.
	for _, c := range clients[:n/2] {
		c.nc.Close()
	}
	waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == n-n/2 })
	for i, c := range clients[n/2:] {
		add(t, c.nc, c.rd, 3, int64(i))
	}
	idle(n-n/2, "after half the peers left")

	// Shutdown sends every parked connection GOAWAY OK, then closes it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.TCP.Shutdown(ctx) }()
	for _, c := range clients[n/2:] {
		expectFrames(t, c.rd, []answer{{wire.KindGoAway, 0, codes.OK}}, true)
		c.nc.Close()
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitFor(t, func() bool { return openFiles(t) <= files+1 }) // +1: the listener, closed at cleanup
}

// TestParkedIdleTimeout checks that a parked connection still gets its idle
// timeout: GOAWAY OK, then close.
func TestParkedIdleTimeout(t *testing.T) {
	srv := start(t, tcpserver.Options{IdleTimeout: 400 * time.Millisecond})
	nc, rd := dial(t, srv.TCPAddr, true)
	add(t, nc, rd, 1, 41)
	start := time.Now()
	expectFrames(t, rd, []answer{{wire.KindGoAway, 0, codes.OK}}, true)
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", waited)
	}
}

// TestParkChurn races parking against requests, peers leaving and
// Shutdown: 100 connections each make a call, idle long enough to be
// parked (or just not), call again, and half of them leave; every call is
// answered and nothing leaks (run it with -race). It runs twice: with the
// parked connections detached at once, and not.
func TestParkChurn(t *testing.T) {
	t.Run("parked", func(t *testing.T) { testParkChurn(t) })
	t.Run("detached", func(t *testing.T) {
		tcpserver.SetDetachAfter(t, 0) // each is detached 0–10 ms after it parks
		testParkChurn(t)
	})
}

func testParkChurn(t *testing.T) {
	srv := start(t, tcpserver.Options{})
	const n = 100
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- func() error {
				nc, err := net.Dial("tcp", srv.TCPAddr)
				if err != nil {
					return err
				}
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
				rd := wire.NewReader(nc, 0)
				if _, err := nc.Write(wire.AppendPreface(nil)); err != nil {
					return err
				}
				if _, err := rd.ReadFrame(); err != nil {
					return err
				}
				msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: int64(i), Rhs: 1})
				for id := uint32(1); id <= 3; id++ {
					// Idle 0–250 ms: around the 100 ms at which a connection parks.
					time.Sleep(time.Duration(i*int(id)%26) * 10 * time.Millisecond)
					if _, err := nc.Write(request(id, calculate, 0, msg)); err != nil {
						return err
					}
					f, err := rd.ReadFrame()
					if err != nil || f.Kind != wire.KindResponse || f.ID != id {
						return fmt.Errorf("conn %d call %d: %v %v %v", i, id, f.Kind, f.ID, err)
					}
					if i%2 == 0 && id == 2 {
						time.Sleep(time.Duration(i%26) * 10 * time.Millisecond)
						return nil // leaves, parked or not
					}
				}
				return nil
			}()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
