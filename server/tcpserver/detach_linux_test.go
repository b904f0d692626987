package tcpserver_test

import (
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// waitDetached waits until srv holds n connections detached.
func waitDetached(t *testing.T, srv *tcpserver.Server, n int, why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tcpserver.Detached(srv) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d connections detached, want %d", why, tcpserver.Detached(srv), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openFiles counts the process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestDetachedConnectionEnds checks that the timers that end an idle
// connection reach it when it is detached: the idle timeout, and
// MaxConnectionAge, whose GOAWAY is written by another goroutine than the
// connection's.
func TestDetachedConnectionEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts tcpserver.Options
	}{
		{"idle timeout", tcpserver.Options{IdleTimeout: 800 * time.Millisecond}},
		{"max connection age", tcpserver.Options{MaxConnectionAge: 800 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tcpserver.SetDetachAfter(t, 0)
			srv := start(t, tc.opts)
			nc, rd := dial(t, srv.TCPAddr, true)
			add(t, nc, rd, 1, 41)
			waitDetached(t, srv.TCP, 1, "after the call")
			expectFrames(t, rd, []answer{{wire.KindGoAway, 0, codes.OK}}, true)
			waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 0 })
		})
	}
}

// TestDetachedConnectionReset checks a detached connection whose client
// sends half a frame and resets the connection before the server wakes it:
// re-attaching finds a socket with no peer address (net.FileConn does not
// report that), and the server must close the connection, not fail on it.
func TestDetachedConnectionReset(t *testing.T) {
	tcpserver.SetDetachAfter(t, 0)
	srv := start(t, tcpserver.Options{})
	nc, rd := dial(t, srv.TCPAddr, true)
	add(t, nc, rd, 1, 41)
	waitDetached(t, srv.TCP, 1, "after the call")
	unlock := tcpserver.LockParker(srv.TCP)
	if _, err := nc.Write(request(2, calculate, 0, []byte{8, 1})[:7]); err != nil {
		unlock()
		t.Fatal(err)
	}
	_ = nc.(*net.TCPConn).SetLinger(0)
	nc.Close() // a reset, with the half frame unread
	time.Sleep(50 * time.Millisecond)
	unlock()
	waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 0 })

	// The server goes on serving.
	nc2, rd2 := dial(t, srv.TCPAddr, true)
	add(t, nc2, rd2, 1, 1)
}
