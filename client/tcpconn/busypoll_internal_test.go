package tcpconn

import (
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/calcrpc/calc/internal/busypoll"
	"github.com/calcrpc/calc/internal/wire"
)

// TestIdleConnsAreNotBusyReaders: a Conn with nothing to do does not count
// in readers, though its reader goroutine waits in readBurst's ReadFrame
// (from NewConn on, and again after every readerRetake).
func TestIdleConnsAreNotBusyReaders(t *testing.T) {
	before := readers.Load()
	for range 2 {
		startRoleServer(t, time.Millisecond) // no call: its reader blocks in readBurst
	}
	time.Sleep(20 * time.Millisecond)
	if n := readers.Load() - before; n != 0 {
		t.Errorf("readers = %d more with 2 idle connections, want 0", n)
	}
}

// TestIdleConnsDoNotStopPolling: a reader that reads two answers at once
// with a third call pending polls for the next (its Poller records the
// empty poll), alone and beside two idle Conns in the process.
func TestIdleConnsDoNotStopPolling(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	for _, idle := range []int{0, 2} {
		t.Run(map[int]string{0: "alone", 2: "beside 2 idle conns"}[idle], func(t *testing.T) {
			for range idle {
				startRoleServer(t, time.Hour)
			}
			s, c := startRoleServer(t, time.Hour)
			var dones []<-chan callResult
			var ids []uint32
			for range 3 {
				dones = append(dones, call(context.Background(), c))
				ids = append(ids, s.next(t, wire.KindRequest).ID)
			}
			s.out <- append(answer(ids[0], 5, 0), answer(ids[1], 5, 0)...) // two at once, one still pending
			for _, d := range dones[:2] {
				if r := wait(t, d); r.err != nil {
					t.Fatal(r.err)
				}
			}
			time.Sleep(5 * time.Millisecond) // past any poll
			s.out <- answer(ids[2], 5, 0)
			if r := wait(t, dones[2]); r.err != nil {
				t.Fatal(r.err)
			}
			c.Close() // the reader has exited: its Poller may be read
			if c.poller == (busypoll.Poller{}) {
				t.Errorf("the reader never polled after two answers at once (beside %d idle Conns)", idle)
			}
		})
	}
}

// TestResetDuringPoll: a reset that arrives while the reader polls fails
// the pending call with the reset, as without polling: the poll's check
// leaves the socket's pending error for the read (a MSG_PEEK receive would
// take it, and the read would see a plain EOF).
func TestResetDuringPoll(t *testing.T) {
	for _, tc := range []struct {
		name string
		poll time.Duration
	}{{"off", -1}, {"on", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			err := resetDuringPoll(t, tc.poll)
			if !strings.Contains(err.Error(), "reset") {
				t.Errorf("pending call failed with %v, want a reset", err)
			}
		})
	}
}

// resetDuringPoll makes three calls on a Conn with BusyPoll poll to a
// server that answers two in one write and resets the connection right
// after; it returns the third call's error.
func resetDuringPoll(t *testing.T, poll time.Duration) error {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		nc, err := lis.Accept()
		if err != nil {
			return
		}
		var p [wire.PrefaceSize]byte
		if _, err := io.ReadFull(nc, p[:]); err != nil {
			return
		}
		_, _ = nc.Write(wire.AppendSettingsFrame(nil, wire.Settings{}))
		rd := wire.NewReader(nc, 0)
		var ids []uint32
		for len(ids) < 3 {
			f, err := rd.ReadFrame()
			if err != nil {
				return
			}
			if f.Kind == wire.KindRequest {
				ids = append(ids, f.ID)
			}
		}
		_, _ = nc.Write(append(answer(ids[0], 5, 0), answer(ids[1], 5, 0)...))
		_ = nc.(*net.TCPConn).SetLinger(0)
		_ = nc.Close() // RST
	}()
	c, err := Dial(context.Background(), lis.Addr().String(), Options{KeepaliveInterval: -1, BusyPoll: poll})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var dones []<-chan callResult
	for range 3 {
		dones = append(dones, call(context.Background(), c))
	}
	var last error
	for _, d := range dones {
		if r := wait(t, d); r.err != nil {
			last = r.err
		}
	}
	if last == nil {
		t.Fatal("every call succeeded")
	}
	return last
}
