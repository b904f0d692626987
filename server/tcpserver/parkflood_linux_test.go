package tcpserver_test

// Clients that flood a parked or detached connection and never read, or
// leave half a frame on one: the server must wake it, and end it by its
// own timeouts (WriteTimeout, FrameTimeout), never hold it parked while
// the client is blocked writing to it.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// floodWriteTimeout is the WriteTimeout of the servers the floods run
// against.
const floodWriteTimeout = 300 * time.Millisecond

// floodBound is how long a flood may go on before the test calls the
// connection stuck: the server should end it within WriteTimeout, plus
// closeLinger (1 s) of discarding what still arrives, plus the time its
// buffers take to fill: 1.3-1.6 s here, up to 5 s under -race. A
// liveness bound, not a performance threshold: generous, so that a loaded
// CI machine never trips it.
const floodBound = 30 * time.Second

// startSmallSendBuffer is start with a listener whose accepted sockets
// have a send buffer of sndbuf bytes (the kernel doubles it), fixed, not
// autotuned: a server's writes to a client that never reads then block
// after kilobytes rather than megabytes, and a flood ends quickly. The
// calculator's codec, inline methods and leak check are start's.
func startSmallSendBuffer(t *testing.T, opts tcpserver.Options, sndbuf int) *testServer {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return setSockopt(rc, syscall.SO_SNDBUF, sndbuf)
	}}
	lis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startServiceOn(t, opts, nil, lis)
}

// setSockopt sets the SOL_SOCKET option opt of rc's socket to v.
func setSockopt(rc syscall.RawConn, opt, v int) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, v) }); cerr != nil {
		return cerr
	}
	return err
}

// dialSmallWindow opens a raw connection with a 4 KiB receive buffer, set
// before the connection is made so that the window it advertises stays
// small, and does the handshake. It is closed when the test ends. It
// reports its failures rather than failing the test, so that goroutines
// may call it.
func dialSmallWindow(addr string) (net.Conn, *wire.Reader, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return setSockopt(rc, syscall.SO_RCVBUF, 4<<10)
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	rd := wire.NewReader(nc, 0)
	if _, err := nc.Write(wire.AppendPreface(nil)); err != nil {
		nc.Close()
		return nil, nil, err
	}
	if f, err := rd.ReadFrame(); err != nil || f.Kind != wire.KindSettings {
		nc.Close()
		return nil, nil, fmt.Errorf("handshake: %v %v", f.Kind, err)
	}
	return nc, rd, nil
}

// mustDialSmallWindow is dialSmallWindow for the test's goroutine.
func mustDialSmallWindow(t *testing.T, addr string) (net.Conn, *wire.Reader) {
	t.Helper()
	nc, rd, err := dialSmallWindow(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc, rd
}

// tryAdd is add reporting its failure, for goroutines.
func tryAdd(nc net.Conn, rd *wire.Reader, id uint32, a int64) error {
	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: a, Rhs: 1})
	if _, err := nc.Write(request(id, calculate, 0, msg)); err != nil {
		return err
	}
	f, err := rd.ReadFrame()
	if err != nil || f.Kind != wire.KindResponse || f.ID != id {
		return fmt.Errorf("call %d: %v %v %v", id, f.Kind, f.ID, err)
	}
	return nil
}

// floodBatch returns n Calculate REQUEST frames with ids from id up, on
// method ref 1 (which the connection's first call bound).
func floodBatch(id uint32, n int) []byte {
	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	payload := append([]byte{1}, msg...) // the request header: ref 1, no flags
	var b []byte
	for i := range n {
		b = wire.AppendFrame(b, wire.KindRequest, 0, id+uint32(i), payload)
	}
	return b
}

// floodResult is how a flood ended.
type floodResult struct {
	written int           // bytes of requests the server's socket took
	stalls  int           // writes that made no progress within floodStall: the server was not reading
	stalled time.Duration // from the first write to the first stall
	took    time.Duration // from the first write to the end
	err     error         // the error that ended the flood; nil if it reached its bounds
}

func (r floodResult) String() string {
	return fmt.Sprintf("%d bytes written, %d stalls (the first after %v), ended after %v by %v", r.written, r.stalls, r.stalled, r.took, r.err)
}

// floodStall is how long one of flood's writes may wait for the server to
// read before it counts as a stall (the flood then goes on writing).
const floodStall = 100 * time.Millisecond

// floodFrames is how many frames flood writes at a time.
const floodFrames = 512

// flood writes Calculate REQUEST frames with ids from firstID up and never
// reads an answer, until a write fails with anything but its own deadline
// (the server ended the connection), or 256 MiB are written, or floodBound
// passes. stalled, if not nil, is sent the first stall. A batch cut short
// by a stall is finished first, so the server reads whole frames only.
func flood(nc net.Conn, firstID uint32, stalled chan<- struct{}) (r floodResult) {
	start := time.Now()
	defer func() { r.took = time.Since(start) }()
	id := firstID
	var batch []byte
	for r.written < 256<<20 && time.Since(start) < floodBound {
		if len(batch) == 0 {
			batch = floodBatch(id, floodFrames)
			id += floodFrames
		}
		_ = nc.SetWriteDeadline(time.Now().Add(floodStall))
		n, err := nc.Write(batch)
		r.written += n
		batch = batch[n:]
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if r.stalls++; r.stalls == 1 {
				r.stalled = time.Since(start)
				if stalled != nil {
					stalled <- struct{}{}
				}
			}
		case err != nil:
			r.err = err
			return r
		}
	}
	return r
}

// checkEnded fails the test unless the flood r was ended by the server.
func checkEnded(t *testing.T, r floodResult) {
	t.Helper()
	t.Logf("flood: %v", r)
	if r.err == nil {
		t.Fatalf("a client that never reads flooded a connection for %v and the server did not end it: %v", r.took, r)
	}
}

// TestFloodedDetachedConnectionEnds checks a detached connection whose
// client floods it with unary requests and never reads an answer: the
// server wakes it, re-attaches it, serves it until its own writes block
// (the client's small window is full), and then ends it once WriteTimeout
// passes, so the client's writes fail (a reset) within floodBound instead
// of blocking forever behind a connection the server holds parked.
// Meanwhile another detached connection of the same server is served
// (a call on it once the flood has stalled), and afterwards the server
// runs no goroutine for the flooded connection (start's cleanup checks
// that none leaked at all). It runs with the calls answered on the
// connection's goroutine (which then blocks in the write itself) and with
// each call in a goroutine of its own (the connection's goroutine reads
// on until MaxConcurrentCalls are in flight); the latter on a small send
// buffer, so that filling it does not take hundreds of thousands of
// calls, each a goroutine (over 6 s under -race).
func TestFloodedDetachedConnectionEnds(t *testing.T) {
	t.Run("inline", func(t *testing.T) {
		tcpserver.SetDetachAfter(t, 0)
		testFloodedDetached(t, start(t, tcpserver.Options{WriteTimeout: floodWriteTimeout}))
	})
	t.Run("goroutine per call", func(t *testing.T) {
		tcpserver.SetDetachAfter(t, 0)
		testFloodedDetached(t, startSmallSendBuffer(t, tcpserver.Options{WriteTimeout: floodWriteTimeout, Dispatch: tcpserver.DispatchGoroutine}, 8<<10))
	})
}

func testFloodedDetached(t *testing.T, srv *testServer) {
	nc, rd := mustDialSmallWindow(t, srv.TCPAddr)
	add(t, nc, rd, 1, 41)
	other, otherRd := dial(t, srv.TCPAddr, true)
	add(t, other, otherRd, 1, 1)
	waitDetached(t, srv.TCP, 2, "after a call on each")
	base := runtime.NumGoroutine() // the parker's, none for either connection

	stalled := make(chan struct{}, 1)
	done := make(chan floodResult, 1)
	go func() { done <- flood(nc, 2, stalled) }()
	var r floodResult
	select {
	case <-stalled:
		add(t, other, otherRd, 2, 2) // while the flooded connection takes no more requests
		r = <-done
	case r = <-done:
		t.Errorf("the flood never stalled, so the other connection was not tried while it was stuck: %v", r)
	}
	checkEnded(t, r)
	waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 1 })
	add(t, other, otherRd, 3, 3)
	waitGoroutines(t, base, "after the flooded connection ended and the other went idle again")
}

// TestFloodAroundDetach floods connections, never reading, with the first
// requests arriving in the windows where a wake-up could be lost, and
// checks each connection is woken and then ended by WriteTimeout within
// floodBound, as in TestFloodedDetachedConnectionEnds. A lost wake-up
// would leave the connection parked with the client blocked writing,
// which this reports as a flood the server never ended.
//
//   - at park: the connection's goroutine has given up its idle wait and
//     waits for the parker's lock (held by the test) to register the
//     socket; the first requests arrive before the registration, which
//     alone must wake it (the connection is never detached here).
//   - at detach: the connection is parked, its detach is due, and the
//     parker's loop waits for its lock (held by the test) to sweep, with
//     no event in hand; the first requests arrive, then the sweep
//     registers the duplicate descriptor and drops the original's
//     registration, whose event is pending.
//   - staggered: connections start flooding 88 to 114 ms after their
//     call's answer, in 2 ms steps, across the moment they park (about
//     101 ms: idleAfter and the hot read) and the sweep, at most 10 ms
//     later, that detaches them; all at once, with nothing held.
//
// The servers have small send buffers, so each flood ends in about 1.5 s.
func TestFloodAroundDetach(t *testing.T) {
	opts := tcpserver.Options{WriteTimeout: floodWriteTimeout}
	const sndbuf = 8 << 10

	t.Run("at park", func(t *testing.T) {
		tcpserver.SetDetachAfter(t, time.Hour) // a detach would register the socket anew, and wake it
		srv := startSmallSendBuffer(t, opts, sndbuf)
		nc, rd := mustDialSmallWindow(t, srv.TCPAddr)
		add(t, nc, rd, 1, 41)
		answered := time.Now()
		time.Sleep(40 * time.Millisecond) // the connection waits, warm, until about 101 ms
		unlock := tcpserver.LockParker(srv.TCP)
		time.Sleep(time.Until(answered.Add(160 * time.Millisecond))) // its goroutine now waits in park
		_, err := nc.Write(floodBatch(2, floodFrames))
		time.Sleep(5 * time.Millisecond)
		unlock()
		if err != nil {
			t.Fatal(err)
		}
		checkEnded(t, flood(nc, 2+floodFrames, nil))
		waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 0 })
	})

	t.Run("at detach", func(t *testing.T) {
		const detach = 600 * time.Millisecond // the parker sweeps every 75 ms
		tcpserver.SetDetachAfter(t, detach)
		srv := startSmallSendBuffer(t, opts, sndbuf)
		var nc net.Conn
		var answered time.Time
		for attempt := 1; ; attempt++ {
			c, rd := mustDialSmallWindow(t, srv.TCPAddr)
			add(t, c, rd, 1, 41)
			answered = time.Now()
			waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsIdle == 1 })
			n := tcpserver.Detached(srv.TCP)
			if n == 0 && time.Since(answered) < detach*2/3 {
				nc = c
				break
			}
			// Parked too late to hold the detach back (a loaded machine):
			// try again on a new connection.
			c.Close()
			if attempt == 3 {
				t.Fatalf("3 connections parked too late: the last %v after its call (%d detached)", time.Since(answered), n)
			}
			waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 0 })
		}
		unlock := tcpserver.LockParker(srv.TCP)
		// The loop's wait (at most 75 ms) ends meanwhile, and it waits for
		// the lock with the detach due.
		time.Sleep(time.Until(answered.Add(detach + 20*time.Millisecond)))
		_, err := nc.Write(floodBatch(2, floodFrames))
		time.Sleep(5 * time.Millisecond)
		unlock()
		if err != nil {
			t.Fatal(err)
		}
		checkEnded(t, flood(nc, 2+floodFrames, nil))
		waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 0 })
	})

	t.Run("staggered", func(t *testing.T) {
		tcpserver.SetDetachAfter(t, 0)
		srv := startSmallSendBuffer(t, opts, sndbuf)
		const n = 14
		results := make(chan error, n)
		for i := range n {
			delay := 88*time.Millisecond + time.Duration(i)*2*time.Millisecond
			go func() {
				results <- func() error {
					nc, rd, err := dialSmallWindow(srv.TCPAddr)
					if err != nil {
						return err
					}
					defer nc.Close()
					if err := tryAdd(nc, rd, 1, 41); err != nil {
						return err
					}
					time.Sleep(delay)
					if r := flood(nc, 2, nil); r.err == nil {
						return fmt.Errorf("flooding %v after the call: the server did not end the connection: %v", delay, r)
					}
					return nil
				}()
			}()
		}
		for range n {
			if err := <-results; err != nil {
				t.Error(err)
			}
		}
		waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 0 })
	})
}

// TestHalfFrameWhileIdleEnds checks a client that sends part of a frame
// (less than its length prefix promises) and then goes quiet: the server
// must end the connection per FrameTimeout, with GOAWAY DEADLINE_EXCEEDED
// and a close, whether the part arrives while the connection still has
// its goroutine (right after a call), while it is parked, or while it is
// detached; it must not park the connection again with the frame half
// read and hold it. Cut: two bytes of the length prefix; a whole header
// and half a Calculate request's payload; the first 64 KiB of a 1 MiB
// frame (read in a buffer of its own).
func TestHalfFrameWhileIdleEnds(t *testing.T) {
	const frameTimeout = 300 * time.Millisecond
	calc := request(2, calculate, 0, []byte{8, 1, 16, 2, 24, 3})
	large := request(2, calculate, 0, make([]byte, 1<<20))
	for _, when := range []struct {
		name        string
		detachAfter time.Duration
		wait        func(t *testing.T, srv *testServer)
	}{
		{"warm", time.Hour, func(*testing.T, *testServer) {}},
		{"parked", time.Hour, func(t *testing.T, srv *testServer) {
			waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsIdle == 1 })
		}},
		{"detached", 0, func(t *testing.T, srv *testServer) { waitDetached(t, srv.TCP, 1, "after the call") }},
	} {
		for _, cut := range []struct {
			name string
			send []byte
		}{
			{"length prefix", calc[:2]},
			{"payload", calc[:len(calc)-3]},
			{"large frame", large[:64<<10]},
		} {
			t.Run(when.name+"/"+cut.name, func(t *testing.T) {
				tcpserver.SetDetachAfter(t, when.detachAfter)
				srv := start(t, tcpserver.Options{FrameTimeout: frameTimeout})
				nc, rd := dial(t, srv.TCPAddr, true)
				add(t, nc, rd, 1, 41)
				when.wait(t, srv)
				sent := time.Now()
				if _, err := nc.Write(cut.send); err != nil {
					t.Fatal(err)
				}
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				expectFrames(t, rd, []answer{{wire.KindGoAway, 0, codes.DeadlineExceeded}}, true)
				if took := time.Since(sent); took < frameTimeout*2/3 {
					t.Fatalf("ended %v after the half frame, before FrameTimeout (%v)", took, frameTimeout)
				}
				waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 0 })
			})
		}
	}
}
