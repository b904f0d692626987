package tcpserver_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// TestGoAwaySurvivesLateFrames: a client whose frames reach the server
// after the server has sent GOAWAY and closed (here: an idle connection
// aged out) can still write, and reads the GOAWAY and then a clean end,
// never a reset. A
// server that closed its socket with those frames unread would make the
// kernel answer them with RST, and the client would lose the GOAWAY it had
// not read yet (Python's asyncio and every TLS stack drop buffered data on
// a reset), so it could not tell which calls to retry.
func TestGoAwaySurvivesLateFrames(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name   string
		server *tls.Config
	}{{"plaintext", nil}, {"TLS", p.serverConfig(p.server, false)}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t, tcpserver.Options{TLSConfig: tc.server, MaxConnectionAge: 50 * time.Millisecond})
			raw, err := net.Dial("tcp", srv.TCPAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
			nc := raw
			if tc.server != nil {
				cfg := p.clientConfig()
				cfg.NextProtos, cfg.ServerName = []string{wire.ALPN}, "localhost"
				nc = tls.Client(raw, cfg)
			}
			rd := wire.NewReader(nc, 0)
			if _, err := nc.Write(wire.AppendPreface(nil)); err != nil {
				t.Fatal(err)
			}
			if f, err := rd.ReadFrame(); err != nil || f.Kind != wire.KindSettings {
				t.Fatalf("handshake: %v %v", f.Kind, err)
			}
			// Wait, without reading it, until the GOAWAY has arrived: by
			// then the server has closed (or half-closed) its side.
			waitReadable(t, raw)
			// Frames the server did not ask for: a call and a ping.
			late := request(1, "/calculator.v1.CalculatorService/Calculate", 0, nil)
			late = wire.AppendFrame(late, wire.KindPing, 0, 0, make([]byte, 8))
			if _, err := nc.Write(late); err != nil {
				t.Fatalf("writing after the GOAWAY arrived: %v", err)
			}
			time.Sleep(100 * time.Millisecond) // time for a reset to come back, if one does
			// A client's write fails once a reset has come back; many
			// clients then give the connection up without reading what
			// it holds. The server must still be reading, and discarding.
			if _, err := nc.Write(late); err != nil {
				t.Fatalf("writing again, after time for a reset: %v", err)
			}
			f, err := rd.ReadFrame()
			if err != nil || f.Kind != wire.KindGoAway {
				t.Fatalf("read %v %v, want GOAWAY", f.Kind, err)
			}
			if last, _, _ := wire.ParseGoAway(f.Payload); last != 0 {
				t.Errorf("GOAWAY's last id %d, want 0 (no call accepted)", last)
			}
			for { // a PONG, if the ping came before the close
				f, err = rd.ReadFrame()
				if err != nil {
					break
				}
				if f.Kind != wire.KindPong {
					t.Errorf("after the GOAWAY: %v frame", f.Kind)
				}
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrTruncated) {
				t.Fatalf("after the GOAWAY: %v, want a clean end", err)
			}
		})
	}
}

// waitReadable blocks until bytes are waiting on nc's socket, reading none.
func waitReadable(t *testing.T, nc net.Conn) {
	t.Helper()
	rc, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN)
	})
	if err != nil {
		t.Fatal(err)
	}
}
