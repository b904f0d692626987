package tcpserver_test

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// waitStats waits (at most 10 s) until the server's Stats satisfy ok, and
// fails the test with the last snapshot otherwise.
func waitStats(t *testing.T, srv *testServer, what string, ok func(tcpserver.Stats) bool) tcpserver.Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := srv.TCP.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// silent opens a connection that sends nothing.
func silent(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// TestStatsRefusals: each way a connection is refused is counted under
// its reason, and nothing else is.
func TestStatsRefusals(t *testing.T) {
	badVersion := wire.AppendPreface(nil)
	badVersion[len(badVersion)-1] = wire.Version + 1
	tests := []struct {
		reason string
		opts   tcpserver.Options
		act    func(t *testing.T, addr string)
		goAway codes.Code // the GOAWAY the refusal sends, OK for none
	}{
		{"per_addr", tcpserver.Options{MaxConnectionsPerAddr: 1}, func(t *testing.T, addr string) {
			dial(t, addr, true)
			dial(t, addr, false)
		}, codes.ResourceExhausted},
		{"max_connections", tcpserver.Options{MaxConnections: 1}, func(t *testing.T, addr string) {
			dial(t, addr, true)
			nc, _ := dial(t, addr, false)
			_, _ = nc.Write(wire.AppendPreface(nil))
		}, codes.ResourceExhausted},
		{"handshake_evicted", tcpserver.Options{MaxHandshakes: 1}, func(t *testing.T, addr string) {
			silent(t, addr)
			time.Sleep(50 * time.Millisecond) // the first is the oldest
			silent(t, addr)
		}, codes.OK},
		{"handshake_timeout", tcpserver.Options{HandshakeTimeout: 50 * time.Millisecond}, func(t *testing.T, addr string) {
			silent(t, addr)
		}, codes.OK},
		{"bad_preface", tcpserver.Options{}, func(t *testing.T, addr string) {
			_, _ = silent(t, addr).Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, codes.OK},
		{"unsupported_version", tcpserver.Options{}, func(t *testing.T, addr string) {
			_, _ = silent(t, addr).Write(badVersion)
		}, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			srv := start(t, tt.opts)
			tt.act(t, srv.TCPAddr)
			st := waitStats(t, srv, "refusal counted", func(st tcpserver.Stats) bool { return st.ConnectionsRefused[tt.reason] == 1 })
			for reason, n := range st.ConnectionsRefused {
				if reason != tt.reason && n != 0 {
					t.Errorf("refused[%s] = %d, want 0", reason, n)
				}
			}
			if tt.goAway != codes.OK {
				waitStats(t, srv, "GOAWAY counted", func(st tcpserver.Stats) bool { return st.GoAwaysSent[tt.goAway] == 1 })
			}
		})
	}
}

// TestStatsGauges: the connection gauges follow connections in and out,
// through the handshake and (on Linux) the idler, and bytes are counted
// both ways.
func TestStatsGauges(t *testing.T) {
	srv := start(t, tcpserver.Options{})
	pending := silent(t, srv.TCPAddr)
	waitStats(t, srv, "one in the handshake", func(st tcpserver.Stats) bool {
		return st.ConnectionsOpen == 1 && st.ConnectionsHandshaking == 1
	})
	var conns []net.Conn
	for range 3 {
		nc, _ := dial(t, srv.TCPAddr, true)
		conns = append(conns, nc)
	}
	wantIdle := 0
	if runtime.GOOS == "linux" {
		wantIdle = 3 // quiet for idleAfter (100 ms), each is parked
	}
	st := waitStats(t, srv, fmt.Sprintf("four open, three idle on %s", runtime.GOOS), func(st tcpserver.Stats) bool {
		return st.ConnectionsOpen == 4 && st.ConnectionsHandshaking == 1 && st.ConnectionsIdle == wantIdle
	})
	if st.BytesReceived < 3*uint64(len(wire.AppendPreface(nil))) || st.BytesSent == 0 {
		t.Errorf("bytes received %d, sent %d: want three prefaces in, SETTINGS out", st.BytesReceived, st.BytesSent)
	}
	pending.Close()
	for _, nc := range conns {
		nc.Close()
	}
	waitStats(t, srv, "all closed", func(st tcpserver.Stats) bool {
		return st.ConnectionsOpen == 0 && st.ConnectionsHandshaking == 0 && st.ConnectionsIdle == 0 && st.StreamsOpen == 0
	})
}
