package wsserver_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/devcerts"
	"github.com/calcrpc/calc/server/auth"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/tcpserver"
	"github.com/calcrpc/calc/server/wsserver"
)

// TestClientCertificatePrincipal: over wss:// with mutual TLS terminated
// by the HTTP server, the verified client certificate names the principal,
// as on the other ports: a call with no token is let in by the
// certificate's grant, and a method outside it is PERMISSION_DENIED.
func TestClientCertificatePrincipal(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pair := func(p *devcerts.Pair, err error) tls.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	serverCert := pair(ca.Server(devcerts.Options{}))
	clientCert := pair(ca.Client(devcerts.Options{}))

	path := filepath.Join(t.TempDir(), "auth.json")
	policy := `{"principals": [{"name": "game", "certificate": "` + devcerts.ClientCommonName +
		`", "methods": ["/calculator.v1.CalculatorService/Calculate"]}]}`
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := wsserver.New(wsserver.Options{TCP: tcpserver.Options{
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{a.UnaryInterceptor()},
		StreamInterceptors: []grpc.StreamServerInterceptor{a.StreamInterceptor()},
	}})
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	hs := httptest.NewUnstartedServer(srv)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13}
	hs.StartTLS()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert}, ServerName: "localhost",
	}}}
	defer httpClient.CloseIdleConnections()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(hs.URL, "https")+"/ws",
		&websocket.DialOptions{Subprotocols: []string{wsserver.Subprotocol}, HTTPClient: httpClient})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := tcpconn.NewConn(ctx, websocket.NetConn(context.Background(), ws, websocket.MessageBinary), tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := calculatorv1.NewCalculatorServiceClient(cc)
	if r, err := client.Calculate(ctx, add(20, 22)); err != nil || r.GetResult() != 42 {
		t.Errorf("Calculate with the client certificate's grant: %v %v", r, err)
	}
	if _, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "1"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Evaluate, outside the grant: %v, want PERMISSION_DENIED", err)
	}
}
