package tcpconn

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/internal/devcerts"
	"github.com/calcrpc/calc/internal/wire"
)

// gateConn passes the first `first` bytes of the next Write after arm,
// then waits for open before writing the rest: a TLS record split in two.
type gateConn struct {
	net.Conn
	mu    sync.Mutex
	first int
	open  chan struct{}
}

func (g *gateConn) Write(b []byte) (int, error) {
	g.mu.Lock()
	first, open := g.first, g.open
	g.first = 0
	g.mu.Unlock()
	if first == 0 || first >= len(b) {
		return g.Conn.Write(b)
	}
	n, err := g.Conn.Write(b[:first])
	if err != nil {
		return n, err
	}
	<-open
	m, err := g.Conn.Write(b[first:])
	return n + m, err
}

// TestCallerReadInterruptedMidTLSRecord checks a caller reading its own
// answer over TLS that is cancelled while half a TLS record (another
// call's answer) is in: the reader then finishes the record, the other
// call gets its answer and the connection goes on.
func TestCallerReadInterruptedMidTLSRecord(t *testing.T) {
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := p.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan *gateConn, 1)
	tlsLis := tls.NewListener(gateListener{lis, gate}, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{wire.ALPN}, MinVersion: tls.VersionTLS13})
	reqs := make(chan uint32, 8)
	answers := make(chan []byte, 8)
	c := scripted(t, tlsLis, func() (net.Conn, error) {
		raw, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			return nil, err
		}
		return startTLS(context.Background(), raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	}, Options{KeepaliveInterval: -1}, func(nc net.Conn, rd *wire.Reader) {
		go func() {
			for b := range answers {
				if _, err := nc.Write(b); err != nil {
					return
				}
			}
		}()
		for {
			f, err := rd.ReadFrame()
			if err != nil {
				return
			}
			if f.Kind == wire.KindRequest {
				reqs <- f.ID
			}
		}
	})
	defer close(answers)
	g := <-gate
	for i := range 3 { // warm-up
		d := invokeAsync(context.Background(), c, small)
		answers <- answer(<-reqs, int64(i), 0)
		if r := wait(t, d); r.err != nil {
			t.Fatal(r.err)
		}
		waitRole(t, c, roleFree)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := invokeAsync(ctx, c, small)
	<-reqs
	waitRole(t, c, roleCaller)
	if r, _ := roleOf(c); r != roleCaller {
		t.Fatalf("role %d", r)
	}
	b := invokeAsync(context.Background(), c, small)
	idB := <-reqs
	g.mu.Lock()
	g.first, g.open = 20, make(chan struct{}) // header + a few bytes of the record
	open := g.open
	g.mu.Unlock()
	answers <- answer(idB, 42, 3000)
	time.Sleep(50 * time.Millisecond) // the half record is read by the caller
	cancel()
	if r := wait(t, a); status.Code(r.err) != codes.Canceled {
		t.Fatalf("cancelled: %v", r.err)
	}
	waitRole(t, c, roleReader)
	close(open)
	if r := wait(t, b); r.err != nil || r.resp.GetResult() != 42 {
		t.Fatalf("other call: %v %v", r.resp, r.err)
	}
	d := invokeAsync(context.Background(), c, small)
	answers <- answer(<-reqs, 7, 0)
	if r := wait(t, d); r.err != nil || r.resp.GetResult() != 7 {
		t.Fatalf("after: %v %v", r.resp, r.err)
	}
}

type gateListener struct {
	net.Listener
	gate chan *gateConn
}

func (l gateListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := &gateConn{Conn: nc}
	l.gate <- g
	return g, nil
}
