package auth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func digest(token string) string {
	d := sha256.Sum256([]byte(token))
	return hex.EncodeToString(d[:])
}

const calculate = "/calculator.v1.CalculatorService/Calculate"

// writePolicy writes a policy file and returns its path.
func writePolicy(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var testPolicy = `{
  "principals": [
    {"name": "ci", "token_sha256": "` + digest("s3cret-ci") + `", "methods": ["/calculator.v1.CalculatorService/*"]},
    {"name": "health-only", "token_sha256": "` + digest("s3cret-h") + `", "methods": ["/grpc.health.v1.Health/Check"]},
    {"name": "slow", "token_sha256": "` + digest("s3cret-slow") + `", "methods": ["*"], "rate": 0.001, "burst": 1},
    {"name": "ops", "certificate": "calc-dev-client", "methods": ["*"]}
  ],
  "unauthenticated_rate": 0.001, "unauthenticated_burst": 2
}`

// callCtx is a call's context from addr with the given authorization
// metadata and client certificate common name ("" for none).
func callCtx(addr, authorization, certCN string) context.Context {
	p := &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(addr), Port: 1234}}
	if certCN != "" {
		leaf := &x509.Certificate{Subject: pkix.Name{CommonName: certCN}}
		p.AuthInfo = credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}}
	}
	ctx := peer.NewContext(context.Background(), p)
	if authorization != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", authorization))
	}
	return ctx
}

// TestAuthorize: who may call what, and the exact status of each refusal.
func TestAuthorize(t *testing.T) {
	a, err := New(writePolicy(t, testPolicy), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, addr, auth, cert, method string
		code                           codes.Code
		msg                            string
	}{
		{"token, allowed", "127.0.0.1", "Bearer s3cret-ci", "", calculate, codes.OK, ""},
		{"scheme in any case", "127.0.0.1", "bearer s3cret-ci", "", calculate, codes.OK, ""},
		{"token, forbidden method", "127.0.0.1", "Bearer s3cret-h", "", calculate, codes.PermissionDenied, `principal "health-only" may not call /calculator.v1.CalculatorService/Calculate`},
		{"reflection needs a grant", "127.0.0.1", "Bearer s3cret-ci", "", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.PermissionDenied, "may not call"},
		{"bad token", "127.0.0.1", "Bearer wrong", "", calculate, codes.Unauthenticated, "invalid token"},
		{"not bearer", "127.0.0.1", "Basic s3cret-ci", "", calculate, codes.Unauthenticated, "not \"Bearer <token>\""},
		{"empty token", "127.0.0.1", "Bearer ", "", calculate, codes.Unauthenticated, "not \"Bearer <token>\""},
		{"missing", "127.0.0.1", "", "", calculate, codes.Unauthenticated, "missing credentials"},
		{"health is open", "127.0.0.2", "", "", "/grpc.health.v1.Health/Check", codes.OK, ""},
		{"client certificate", "127.0.0.1", "", "calc-dev-client", calculate, codes.OK, ""},
		{"unknown certificate", "127.0.0.1", "", "mallory", calculate, codes.Unauthenticated, "certificate names no principal"},
		{"token wins over certificate", "127.0.0.1", "Bearer s3cret-h", "calc-dev-client", calculate, codes.PermissionDenied, "health-only"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := a.authorize(callCtx(tt.addr, tt.auth, tt.cert), tt.method)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("got %v, want %v with %q", err, tt.code, tt.msg)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
}

// TestRateLimits: past its bucket a principal, or an address calling
// without credentials, gets RESOURCE_EXHAUSTED with a RetryInfo; other
// principals and addresses are unaffected.
func TestRateLimits(t *testing.T) {
	a, err := New(writePolicy(t, testPolicy), nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := callCtx("127.0.0.1", "Bearer s3cret-slow", "")
	if err := a.authorize(slow, calculate); err != nil {
		t.Fatal(err)
	}
	err = a.authorize(slow, calculate)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "principal slow") {
		t.Fatalf("second call of a 1-call burst: %v", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Fatalf("no RetryInfo with a delay: %v", st.Details())
	}
	if err := a.authorize(callCtx("127.0.0.1", "Bearer s3cret-ci", ""), calculate); err != nil {
		t.Fatalf("another principal: %v", err)
	}
	health := "/grpc.health.v1.Health/Check"
	for i := range 2 {
		if err := a.authorize(callCtx("127.0.0.3", "", ""), health); err != nil {
			t.Fatalf("open call %d within the burst: %v", i, err)
		}
	}
	if err := a.authorize(callCtx("127.0.0.3", "", ""), health); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("open call past the burst: %v", err)
	}
	if err := a.authorize(callCtx("127.0.0.4", "", ""), health); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

// TestPolicyErrors: a wrong file is refused with a message naming the
// fault and never a digest; Reload keeps the policy in force.
func TestPolicyErrors(t *testing.T) {
	for _, tt := range []struct{ name, body, msg string }{
		{"not JSON", `{`, "unexpected EOF"},
		{"unknown field", `{"principals": [], "tokens": []}`, "unknown field"},
		{"no name", `{"principals": [{"token_sha256": "` + digest("x") + `", "methods": ["*"]}]}`, "principal 1 has no name"},
		{"twice", `{"principals": [{"name": "a", "token_sha256": "` + digest("x") + `"}, {"name": "a", "token_sha256": "` + digest("y") + `"}]}`, `"a" is named twice`},
		{"no credential", `{"principals": [{"name": "a", "methods": ["*"]}]}`, "neither token_sha256 nor certificate"},
		{"short digest", `{"principals": [{"name": "a", "token_sha256": "abcd"}]}`, "not a hex SHA-256 digest"},
		{"bad pattern", `{"principals": [{"name": "a", "token_sha256": "` + digest("x") + `", "methods": ["Calculate"]}]}`, `pattern "Calculate"`},
		{"bad open pattern", `{"open_methods": ["/x"]}`, `open method pattern "/x"`},
		{"negative rate", `{"principals": [{"name": "a", "token_sha256": "` + digest("x") + `", "rate": -1}]}`, "must not be negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(writePolicy(t, tt.body), nil)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), digest("x")) {
				t.Fatalf("the error shows a digest: %v", err)
			}
		})
	}
	path := writePolicy(t, testPolicy)
	a, err := New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{`), 0o600); err != nil {
		t.Fatal(err)
	}
	if a.Reload() == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if err := a.authorize(callCtx("127.0.0.1", "Bearer s3cret-ci", ""), calculate); err != nil {
		t.Fatalf("the old policy no longer holds: %v", err)
	}
	if err := os.WriteFile(path, []byte(`{"principals": [{"name": "new", "token_sha256": "`+digest("t2")+`", "methods": ["*"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := a.authorize(callCtx("127.0.0.1", "Bearer s3cret-ci", ""), calculate); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("an old token after the reload: %v", err)
	}
	if err := a.authorize(callCtx("127.0.0.1", "Bearer t2", ""), calculate); err != nil {
		t.Fatalf("the new token: %v", err)
	}
}
