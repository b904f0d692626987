package calcd_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/devcerts"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
	"github.com/calcrpc/calc/server/tlsconfig"
)

// tlsServers starts a calcd serving TLS from files made by a fresh CA,
// with mutual TLS when mutual is set.
func tlsServers(t *testing.T, mutual bool) (*calcdtest.Servers, *devcerts.CA, tlsconfig.Files, *tlsconfig.Reloader) {
	t.Helper()
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := tlsconfig.Files{Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem")}
	if mutual {
		f.ClientCA = filepath.Join(dir, "ca.pem")
		writeFile(t, f.ClientCA, ca.CertPEM)
	}
	writePair(t, ca, f)
	r, err := tlsconfig.New(f, tlsconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return calcdtest.Start(t, calcd.Config{TLSConfig: r.Config()}), ca, f, r
}

// writePair issues a new server certificate and writes it to f's files.
func writePair(t *testing.T, ca *devcerts.CA, f tlsconfig.Files) *devcerts.Pair {
	t.Helper()
	p, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.Cert, p.CertPEM)
	writeFile(t, f.Key, p.KeyPEM)
	return p
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// clientTLS trusts ca and presents a client certificate of it if client.
func clientTLS(t *testing.T, ca *devcerts.CA, client bool) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool()}
	if client {
		p, err := ca.Client(devcerts.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

// dialTLS opens both transports with cfg (nil: plaintext); a raw TCP Dial
// error is returned as the tcp client's.
func dialTLS(t *testing.T, s *calcdtest.Servers, cfg *tls.Config) (map[string]calculatorv1.CalculatorServiceClient, error) {
	t.Helper()
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	gc, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc, err := tcpconn.Dial(ctx, s.TCPAddr, tcpconn.Options{TLSConfig: cfg})
	if err != nil {
		return map[string]calculatorv1.CalculatorServiceClient{"grpc": calculatorv1.NewCalculatorServiceClient(gc)}, err
	}
	t.Cleanup(func() { tc.Close() })
	return map[string]calculatorv1.CalculatorServiceClient{"tcp": calculatorv1.NewCalculatorServiceClient(tc), "grpc": calculatorv1.NewCalculatorServiceClient(gc)}, nil
}

func add(ctx context.Context, c calculatorv1.CalculatorServiceClient) error {
	resp, err := c.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	if err == nil && resp.GetResult() != 5 {
		return status.Errorf(codes.Internal, "2+3 = %d", resp.GetResult())
	}
	return err
}

// TestTLSTransports calls both transports over TLS and mutual TLS.
func TestTLSTransports(t *testing.T) {
	for _, mutual := range []bool{false, true} {
		t.Run(map[bool]string{false: "tls", true: "mtls"}[mutual], func(t *testing.T) {
			s, ca, _, _ := tlsServers(t, mutual)
			clients, err := dialTLS(t, s, clientTLS(t, ca, mutual))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, tr := range calcdtest.Transports {
				if err := add(ctx, clients[tr]); err != nil {
					t.Errorf("%s: %v", tr, err)
				}
			}
		})
	}
}

// TestTLSRefusedOnBothTransports checks the status a misconfigured client
// sees on each transport, within a short deadline: the raw TCP one at
// Dial, the gRPC one at its first call.
func TestTLSRefusedOnBothTransports(t *testing.T) {
	s, ca, _, _ := tlsServers(t, true)
	other, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain := calcdtest.Start(t, calcd.Config{})
	for _, tc := range []struct {
		name    string
		servers *calcdtest.Servers
		cfg     *tls.Config
		// msg is in the status message, by transport. Where grpc-go's
		// message depends on timing (a failed write or the server's
		// alert), only the code is checked.
		msg map[string]string
	}{
		{"unknown authority", s, clientTLS(t, other, true), map[string]string{
			"tcp":  "x509: certificate signed by unknown authority",
			"grpc": "x509: certificate signed by unknown authority"}},
		{"no client certificate", s, clientTLS(t, ca, false), map[string]string{
			"tcp":  "tls: certificate required",
			"grpc": ""}}, // "tls: certificate required" or "write: broken pipe"
		{"plaintext client", s, nil, map[string]string{
			"tcp":  "this port requires TLS (1.3, ALPN calc/1)",
			"grpc": ""}}, // "error reading server preface: EOF", or a reset
		{"TLS client, plaintext server", plain, clientTLS(t, ca, false), map[string]string{
			"tcp":  "tcpconn: TLS handshake with",
			"grpc": "tls: first record does not look like a TLS handshake"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			clients, dialErr := dialTLS(t, tc.servers, tc.cfg)
			for _, tr := range calcdtest.Transports {
				err := dialErr
				if c, ok := clients[tr]; ok {
					err = add(ctx, c)
				}
				t.Logf("%s: %v", tr, err)
				if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), tc.msg[tr]) {
					t.Errorf("%s: %v %q; want UNAVAILABLE with %q", tr, st.Code(), st.Message(), tc.msg[tr])
				}
			}
		})
	}
}

// servingSerial returns the serial of the certificate a new TLS
// connection to addr gets, asking for ALPN proto.
func servingSerial(t *testing.T, addr, proto string, ca *devcerts.CA) string {
	t.Helper()
	d := tls.Dialer{Config: &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{proto}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	return nc.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestTLSReload swaps the certificate files and reloads: new connections
// on both ports get the new certificate, established ones keep working; a
// bad file keeps the new certificate serving.
func TestTLSReload(t *testing.T) {
	s, ca, f, r := tlsServers(t, false)
	clients, err := dialTLS(t, s, clientTLS(t, ca, false))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tr := range calcdtest.Transports {
		if err := add(ctx, clients[tr]); err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
	}
	old := servingSerial(t, s.TCPAddr, "calc/1", ca)
	next := writePair(t, ca, f)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, port := range []struct{ addr, proto string }{{s.TCPAddr, "calc/1"}, {s.GRPCAddr, "h2"}} {
		if got := servingSerial(t, port.addr, port.proto, ca); got != next.Serial.String() || got == old {
			t.Errorf("%s serves serial %s after Reload, want %s (was %s)", port.proto, got, next.Serial, old)
		}
	}
	for _, tr := range calcdtest.Transports {
		if err := add(ctx, clients[tr]); err != nil {
			t.Errorf("%s connection from before the reload: %v", tr, err)
		}
	}
	writeFile(t, f.Cert, []byte("garbage"))
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a bad certificate file succeeded")
	}
	if got := servingSerial(t, s.TCPAddr, "calc/1", ca); got != next.Serial.String() {
		t.Errorf("serial %s after a failed Reload, want %s", got, next.Serial)
	}
}
