package tcpserver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/devcerts"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// pki is a development CA with a server certificate for the loopback
// names and a client certificate.
type pki struct {
	ca             *devcerts.CA
	server, client tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca, server: issue(t, ca.Server, devcerts.Options{}), client: issue(t, ca.Client, devcerts.Options{})}
}

// issue makes a certificate with make (a CA's Server or Client).
func issue(t *testing.T, make func(devcerts.Options) (*devcerts.Pair, error), opts devcerts.Options) tls.Certificate {
	t.Helper()
	p, err := make(opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serverConfig serves cert, requiring client certificates from p's CA
// when mutual is set.
func (p *pki) serverConfig(cert tls.Certificate, mutual bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if mutual {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, p.ca.Pool()
	}
	return cfg
}

// clientConfig trusts p's CA, presenting certs.
func (p *pki) clientConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.ca.Pool(), Certificates: certs}
}

// add calls Calculate(ADD, 2, 3) on conn and checks the answer.
func addOver(t *testing.T, conn grpc.ClientConnInterface) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := calculatorv1.NewCalculatorServiceClient(conn).Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	if err != nil || resp.GetResult() != 5 {
		t.Fatalf("Calculate: %v, %v", resp, err)
	}
}

// TestTLS serves calls over TLS and mutual TLS; handlers see the TLS
// state as peer.AuthInfo, the client's certificate included.
func TestTLS(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name   string
		mutual bool
	}{{"tls", false}, {"mtls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			peers := make(chan *peer.Peer, 1)
			srv := start(t, tcpserver.Options{
				TLSConfig: p.serverConfig(p.server, tc.mutual),
				UnaryInterceptors: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					pr, _ := peer.FromContext(ctx)
					select {
					case peers <- pr:
					default:
					}
					return h(ctx, req)
				}},
			})
			c := srv.DialTCP(t, tcpconn.Options{TLSConfig: p.clientConfig(p.client)})
			addOver(t, c)
			// Past the 100 ms after which a connection goes idle, its TLS
			// reads have timed out between bursts: it still serves.
			time.Sleep(150 * time.Millisecond)
			addOver(t, c)
			info, ok := (<-peers).AuthInfo.(credentials.TLSInfo)
			if !ok || info.State.NegotiatedProtocol != wire.ALPN || info.State.Version != tls.VersionTLS13 {
				t.Fatalf("peer AuthInfo %+v", info)
			}
			if got := len(info.State.PeerCertificates) > 0; got != tc.mutual {
				t.Fatalf("client certificate seen: %v, want %v", got, tc.mutual)
			}
		})
	}
}

// TestTLSRefusals checks what a client that cannot agree with the server
// sees: the status of Dial, within a short deadline.
func TestTLSRefusals(t *testing.T) {
	p := newPKI(t)
	other, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	expired := issue(t, p.ca.Server, devcerts.Options{NotAfter: time.Now().Add(-time.Hour)})
	wrongName := issue(t, p.ca.Server, devcerts.Options{Hosts: []string{"calc.example"}})
	for _, tc := range []struct {
		name   string
		server *tls.Config // nil: plaintext
		client *tls.Config // nil: plaintext
		code   codes.Code
		msg    string
	}{
		{"unknown authority", p.serverConfig(p.server, false), &tls.Config{RootCAs: other.Pool()}, codes.Unavailable, "x509: certificate signed by unknown authority"},
		{"expired", p.serverConfig(expired, false), p.clientConfig(), codes.Unavailable, "x509: certificate has expired"},
		{"wrong name", p.serverConfig(wrongName, false), &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost"}, codes.Unavailable, "x509: certificate is valid for calc.example, not localhost"},
		{"no client certificate", p.serverConfig(p.server, true), p.clientConfig(), codes.Unavailable, "tls: certificate required"},
		{"client certificate of another CA", p.serverConfig(p.server, true), p.clientConfig(issue(t, other.Client, devcerts.Options{})), codes.Unavailable, "tls: unknown certificate authority"},
		{"plaintext client", p.serverConfig(p.server, false), nil, codes.Unavailable, "this port requires TLS (1.3, ALPN calc/1)"},
		{"TLS client, plaintext server", nil, p.clientConfig(), codes.Unavailable, "tcpconn: TLS handshake with 127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t, tcpserver.Options{TLSConfig: tc.server})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := tcpconn.Dial(ctx, srv.TCPAddr, tcpconn.Options{TLSConfig: tc.client})
			if err == nil {
				// TLS 1.3: the client's handshake ends before the server
				// has checked its certificate; the refusal arrives next.
				_, err = calculatorv1.NewCalculatorServiceClient(c).Calculate(ctx, &calculatorv1.CalculateRequest{})
				c.Close()
			}
			t.Log(err)
			if st := status.Convert(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v %q; want %v with %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}

// TestTLSALPN checks that the raw TCP port takes only TLS 1.3 clients that
// ask for ALPN calc/1: one asking for h2 fails its handshake with
// crypto/tls's no_application_protocol alert, a TLS 1.2 one with
// protocol_version; one asking for no protocol completes it and is closed
// before anything is read.
func TestTLSALPN(t *testing.T) {
	p := newPKI(t)
	srv := start(t, tcpserver.Options{TLSConfig: p.serverConfig(p.server, false)})
	for _, tc := range []struct {
		name       string
		protos     []string
		maxVersion uint16
		err        string // of the handshake, or "" if the first read fails
	}{
		{"h2", []string{"h2"}, 0, "tls: no application protocol"},
		{"TLS 1.2", []string{wire.ALPN}, tls.VersionTLS12, "tls: protocol version not supported"},
		{"none", nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tls.Dialer{Config: &tls.Config{RootCAs: p.ca.Pool(), NextProtos: tc.protos, MaxVersion: tc.maxVersion}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			nc, err := d.DialContext(ctx, "tcp", srv.TCPAddr)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("handshake: %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := nc.Write(wire.AppendPreface(nil)); err != nil {
				t.Fatal(err)
			}
			if n, err := nc.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
				t.Fatalf("read %d bytes, %v; want EOF", n, err)
			}
		})
	}
	// The server counts a refusal after the client has seen it.
	waitFor(t, func() bool {
		r := srv.TCP.Stats().ConnectionsRefused
		return r["tls_handshake"] == 2 && r["alpn"] == 1
	})
}

// TestTLSStalledHandshake checks that a client that connects and never
// starts its TLS handshake counts as handshaking: at MaxHandshakes a newer
// connection evicts it, and Shutdown does not wait for it.
func TestTLSStalledHandshake(t *testing.T) {
	p := newPKI(t)
	srv := start(t, tcpserver.Options{TLSConfig: p.serverConfig(p.server, false), MaxHandshakes: 1})
	silent, err := net.Dial("tcp", srv.TCPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsHandshaking == 1 })
	addOver(t, srv.DialTCP(t, tcpconn.Options{TLSConfig: p.clientConfig()}))
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("silent connection read %d bytes, %v; want EOF", n, err)
	}
	if got := srv.TCP.Stats().ConnectionsRefused["handshake_evicted"]; got != 1 {
		t.Fatalf("handshake_evicted = %d, want 1", got)
	}
	// Another one stalls in the handshake while the server shuts down
	// (start's cleanup): Shutdown must not wait for it.
	stalled, err := net.Dial("tcp", srv.TCPAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() }) // after the server's cleanup
	waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsHandshaking == 1 })
}

// TestTLSIdleTimeout checks that an idle TLS connection, which waits in a
// read rather than parked, gets its idle timeout: GOAWAY OK, then the
// connection ends and a call fails UNAVAILABLE.
func TestTLSIdleTimeout(t *testing.T) {
	p := newPKI(t)
	srv := start(t, tcpserver.Options{TLSConfig: p.serverConfig(p.server, false), IdleTimeout: 200 * time.Millisecond})
	c := srv.DialTCP(t, tcpconn.Options{TLSConfig: p.clientConfig(), KeepaliveInterval: -1})
	addOver(t, c)
	waitFor(t, func() bool { return srv.TCP.Stats().GoAwaysSent[codes.OK] == 1 })
	waitFor(t, func() bool { return srv.TCP.Stats().ConnectionsOpen == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := calculatorv1.NewCalculatorServiceClient(c).Calculate(ctx, &calculatorv1.CalculateRequest{})
	if code := status.Code(err); code != codes.Unavailable {
		t.Fatalf("call after the idle timeout: %v; want UNAVAILABLE", err)
	}
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}
