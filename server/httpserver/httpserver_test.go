package httpserver_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calltest"
	"github.com/calcrpc/calc/internal/devcerts"
	_ "github.com/calcrpc/calc/internal/grpcsnappy" // the client's snappy
	"github.com/calcrpc/calc/server/auth"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
	"github.com/calcrpc/calc/server/grpcserver"
	"github.com/calcrpc/calc/server/httpserver"
	"github.com/calcrpc/calc/server/tlsconfig"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCases runs every shared conformance case over every protocol the
// HTTP port speaks: Connect JSON, Connect binary and gRPC-Web over HTTP/2,
// Connect JSON over HTTP/1.1, gRPC, and REST. Each must pass, with the
// outcome (response, code, message, details) the gRPC port gives. REST
// has no streams and HTTP/1.1 no bidirectional stream, so they run the
// unary and concurrent cases; TestBidiNeedsHTTP2 checks the refusal.
func TestCases(t *testing.T) {
	cases, err := calltest.Load("../../testdata/conformance/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := calcdtest.Start(t, calcd.Config{})
	ref := calculatorv1.NewCalculatorServiceClient(srv.DialGRPC(t))
	clients := map[string]calculatorv1.CalculatorServiceClient{
		"grpc": calculatorv1.NewCalculatorServiceClient(calcdtest.DialGRPCAt(t, srv.HTTPAddr)),
		"rest": srv.RESTClient(t),
	}
	for _, p := range calcdtest.HTTPProtocols {
		clients[p] = srv.HTTPClient(t, p)
	}
	protocols := append(slices.Clone(calcdtest.HTTPProtocols), "grpc", "rest")
	runs := 0
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			run := func(client calculatorv1.CalculatorServiceClient) (calltest.Outcome, error) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // the race detector is slow
				defer cancel()
				return calltest.Run(ctx, client, c)
			}
			want, err := run(ref)
			if err != nil {
				t.Fatalf("gRPC port: %v", err)
			}
			for _, p := range protocols {
				unaryOnly := p == "rest" || p == "connect-json-http1"
				if unaryOnly && c.Kind != "unary" && c.Kind != "concurrent" {
					continue
				}
				got, err := run(clients[p])
				runs++
				if err != nil {
					t.Errorf("%s: %v", p, err)
				} else if got != want {
					t.Errorf("%s differs from the gRPC port:\n%s:  %+v\ngrpc: %+v", p, p, got, want)
				}
			}
		})
	}
	t.Logf("%d cases, %d runs over the HTTP port", len(cases), runs)
}

// TestBidiNeedsHTTP2: a bidirectional stream over HTTP/1.1 is refused
// (505 HTTP Version Not Supported), not left hanging.
func TestBidiNeedsHTTP2(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	resp := do(t, srv, http.MethodPost, "/calculator.v1.CalculatorService/CalculateStream", "", map[string]string{"Content-Type": "application/connect+json"})
	if resp.code != http.StatusHTTPVersionNotSupported {
		t.Errorf("HTTP %d %s, want 505", resp.code, resp.body)
	}
}

// response is an HTTP answer, read whole.
type response struct {
	code   int
	header http.Header
	body   string
}

// do sends one HTTP/1.1 request to the HTTP port.
func do(t *testing.T, srv *calcdtest.Servers, method, path, body string, header map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+srv.HTTPAddr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := calcdtest.HTTPClientFor(t, false, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// restStatus is the JSON of a google.rpc.Status, as REST errors carry it.
type restStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		Reason          string `json:"reason"`
		FieldViolations []struct {
			Field string `json:"field"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

func decodeStatus(t *testing.T, r response) restStatus {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var st restStatus
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return st
}

// TestRESTErrors: a REST error answers the HTTP status of its code and the
// JSON of its google.rpc.Status, details included; bad input a user can
// send is INVALID_ARGUMENT (400).
func TestRESTErrors(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	json := map[string]string{"Content-Type": "application/json"}
	for _, tc := range []struct {
		name, method, path, body string
		httpCode                 int
		code                     codes.Code
		message, field, reason   string // "" for any
		refused                  string // the Stats.RequestsRefused key it adds to; "" if it reaches the service
	}{
		{name: "division by zero", method: "GET", path: "/v1/calculate?operator=OPERATOR_DIVIDE&lhs=1&rhs=0",
			httpCode: 400, code: codes.InvalidArgument, message: "division by zero: 1 / 0", field: "rhs", reason: "DIVISION_BY_ZERO"},
		{name: "overflow", method: "POST", path: "/v1/calculate", body: `{"operator":"OPERATOR_MULTIPLY","lhs":"9223372036854775807","rhs":2}`,
			httpCode: 400, code: codes.OutOfRange, reason: "INTEGER_OVERFLOW"},
		{name: "syntax error", method: "POST", path: "/v1/evaluate", body: `{"expression":"2 * (3"}`,
			httpCode: 400, code: codes.InvalidArgument, message: "unbalanced '(' at offset 4", field: "expression", reason: "SYNTAX_ERROR"},
		{name: "expression too long", method: "POST", path: "/v1/evaluate", body: `{"expression":"` + strings.Repeat("1+", 3000) + `1"}`,
			httpCode: 429, code: codes.ResourceExhausted, field: "expression", reason: "EXPRESSION_TOO_LONG"},
		{name: "unspecified operator", method: "GET", path: "/v1/calculate?lhs=1&rhs=2",
			httpCode: 400, code: codes.InvalidArgument, field: "operator"},
		{name: "malformed JSON", method: "POST", path: "/v1/evaluate", body: `{"expression":`, httpCode: 400, code: codes.InvalidArgument, refused: "400"},
		{name: "JSON of the wrong type", method: "POST", path: "/v1/evaluate", body: `{"expression":7}`, httpCode: 400, code: codes.InvalidArgument, refused: "400"},
		{name: "unknown enum name", method: "GET", path: "/v1/calculate?operator=ADD&lhs=2&rhs=3", httpCode: 400, code: codes.InvalidArgument, refused: "400"},
		{name: "not a number", method: "GET", path: "/v1/calculate?operator=OPERATOR_ADD&lhs=two&rhs=3", httpCode: 400, code: codes.InvalidArgument, refused: "400"},
		{name: "unknown query parameter", method: "GET", path: "/v1/calculate?operator=OPERATOR_ADD&lsh=2", httpCode: 400, code: codes.InvalidArgument, refused: "400"},
		{name: "method not allowed", method: "DELETE", path: "/v1/evaluate", httpCode: 405, refused: "405"},
		{name: "unknown REST path", method: "GET", path: "/v1/nope", httpCode: 404, code: codes.Unimplemented, message: "no method at GET /v1/nope", refused: "404"},
		{name: "unknown path", method: "GET", path: "/nope", httpCode: 404, code: codes.Unimplemented, message: "no method at GET /nope", refused: "404"},
		{name: "unknown method of a service", method: "POST", path: "/calculator.v1.CalculatorService/Nope", body: "{}",
			httpCode: 404, code: codes.Unimplemented, refused: "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.HTTP.Stats().RequestsRefused
			r := do(t, srv, tc.method, tc.path, tc.body, json)
			if r.code != tc.httpCode {
				t.Fatalf("HTTP %d %s, want %d", r.code, r.body, tc.httpCode)
			}
			// Refused before the service: counted, since grpc_server_* cannot.
			after := srv.HTTP.Stats().RequestsRefused
			for k := range maps.Keys(after) {
				want := before[k]
				if k == tc.refused {
					want++
				}
				if after[k] != want {
					t.Errorf("RequestsRefused[%q] = %d, want %d", k, after[k], want)
				}
			}
			if tc.refused != "" && after[tc.refused] == 0 {
				t.Errorf("RequestsRefused has no %q: %v", tc.refused, after)
			}
			if tc.code == codes.OK {
				return
			}
			st := decodeStatus(t, r)
			if codes.Code(st.Code) != tc.code || (tc.message != "" && st.Message != tc.message) {
				t.Errorf("status %d %q, want %d %q", st.Code, st.Message, tc.code, tc.message)
			}
			var field, reason string
			for _, d := range st.Details {
				switch d.Type {
				case "type.googleapis.com/google.rpc.BadRequest":
					field = d.FieldViolations[0].Field
				case "type.googleapis.com/google.rpc.ErrorInfo":
					reason = d.Reason
				}
			}
			if field != tc.field || (tc.reason != "" && reason != tc.reason) {
				t.Errorf("details %s: field %q reason %q, want %q %q", r.body, field, reason, tc.field, tc.reason)
			}
		})
	}
}

// TestConnectErrors: malformed Connect requests are INVALID_ARGUMENT; an
// unknown method is UNIMPLEMENTED over every protocol.
func TestConnectErrors(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	for _, tc := range []struct {
		name, path, contentType, body string
		httpCode                      int
		code                          string
	}{
		{"malformed JSON", "/calculator.v1.CalculatorService/Evaluate", "application/json", `{"expression":`, 400, "invalid_argument"},
		// grpc-go answers INTERNAL for a message that does not decode, on the
		// gRPC port too (checked below): binary messages pass through to it.
		{"malformed protobuf", "/calculator.v1.CalculatorService/Evaluate", "application/proto", "\x0a\x05ab", 500, "internal"},
		{"success without Connect-Protocol-Version", "/calculator.v1.CalculatorService/Evaluate", "application/json", `{"expression":"7/2"}`, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, srv, http.MethodPost, tc.path, tc.body, map[string]string{"Content-Type": tc.contentType})
			if r.code != tc.httpCode {
				t.Fatalf("HTTP %d %s, want %d", r.code, r.body, tc.httpCode)
			}
			var e struct{ Code string }
			if err := json.Unmarshal([]byte(r.body), &e); err != nil {
				t.Fatalf("%q: %v", r.body, err)
			}
			if e.Code != tc.code {
				t.Errorf("code %q (%s), want %q", e.Code, r.body, tc.code)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range calcdtest.HTTPProtocols {
		c := connect.NewClient[calculatorv1.EvaluateRequest, calculatorv1.EvaluateResponse](
			calcdtest.HTTPClientFor(t, !strings.HasSuffix(p, "-http1"), nil),
			"http://"+srv.HTTPAddr+"/calculator.v1.CalculatorService/Nope", protocolOptions(p)...)
		if _, err := c.CallUnary(ctx, connect.NewRequest(&calculatorv1.EvaluateRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented {
			t.Errorf("%s: an unknown method: %v, want UNIMPLEMENTED", p, err)
		}
	}
	err := calcdtest.DialGRPCAt(t, srv.HTTPAddr).Invoke(ctx, "/calculator.v1.CalculatorService/Nope", &calculatorv1.EvaluateRequest{}, &calculatorv1.EvaluateResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("gRPC: an unknown method: %v, want UNIMPLEMENTED", err)
	}
	raw := []byte("\x0a\x05ab")
	err = srv.DialGRPC(t).Invoke(ctx, "/calculator.v1.CalculatorService/Evaluate", &raw, &raw, grpc.ForceCodecV2(rawCodec{}))
	if status.Code(err) != codes.Internal {
		t.Errorf("the gRPC port: a message that does not decode: %v, want INTERNAL", err)
	}
}

// rawCodec sends and receives *[]byte as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

func protocolOptions(p string) []connect.ClientOption {
	switch strings.TrimSuffix(p, "-http1") {
	case "connect-json":
		return []connect.ClientOption{connect.WithProtoJSON()}
	case "grpc-web":
		return []connect.ClientOption{connect.WithGRPCWeb()}
	}
	return nil
}

// TestMessageSizeLimit: a request message over the limit of the other
// transports (calcd.Config.GRPC.MaxRecvMsgSize, here 1 KiB) is refused
// with RESOURCE_EXHAUSTED over every protocol, before the service sees it
// (the service's own limit, EXPRESSION_TOO_LONG, is 4096 bytes); one
// under it is served.
func TestMessageSizeLimit(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{GRPC: grpcserver.Options{MaxRecvMsgSize: 1024}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	small := strings.Repeat("1+", 400) + "1" // 801 bytes
	big := strings.Repeat("1+", 800) + "1"   // 1601 bytes
	clients := map[string]calculatorv1.CalculatorServiceClient{
		"grpc": calculatorv1.NewCalculatorServiceClient(calcdtest.DialGRPCAt(t, srv.HTTPAddr)),
		"rest": srv.RESTClient(t),
	}
	for _, p := range calcdtest.HTTPProtocols {
		clients[p] = srv.HTTPClient(t, p)
	}
	for p, c := range clients {
		if r, err := c.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: small}); err != nil || r.GetResult() != "401" {
			t.Errorf("%s: under the limit: %v %v", p, r, err)
		}
		_, err := c.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: big})
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("%s: over the limit: %v, want RESOURCE_EXHAUSTED", p, err)
		}
		for _, d := range status.Convert(err).Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				t.Errorf("%s: over the limit: the service answered (%s), not the transport", p, info.GetReason())
			}
		}
	}
	r := do(t, srv, http.MethodPost, "/v1/evaluate", `{"expression":"`+big+`"}`, map[string]string{"Content-Type": "application/json"})
	if st := decodeStatus(t, r); r.code != http.StatusTooManyRequests || codes.Code(st.Code) != codes.ResourceExhausted {
		t.Errorf("REST over the limit: HTTP %d %s, want 429 RESOURCE_EXHAUSTED", r.code, r.body)
	}
}

// TestAuth: the token policy holds over every protocol of the HTTP port,
// with the HTTP status that goes with the code: no token or a wrong one
// is UNAUTHENTICATED (401), a method the principal may not call
// PERMISSION_DENIED (403).
func TestAuth(t *testing.T) {
	hash := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	path := filepath.Join(t.TempDir(), "auth.json")
	policy := `{"principals": [{"name": "calc", "token_sha256": "` + hash("tok-calc") + `", "methods": ["/calculator.v1.CalculatorService/Calculate"]}]}`
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := calcdtest.Start(t, calcd.Config{Auth: a})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	token := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	add := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
	clients := map[string]calculatorv1.CalculatorServiceClient{"rest": srv.RESTClient(t)}
	for _, p := range calcdtest.HTTPProtocols {
		clients[p] = srv.HTTPClient(t, p)
	}
	for p, c := range clients {
		if _, err := c.Calculate(ctx, add); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: no token: %v, want UNAUTHENTICATED", p, err)
		}
		if _, err := c.Calculate(token("wrong"), add); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: a wrong token: %v, want UNAUTHENTICATED", p, err)
		}
		if r, err := c.Calculate(token("tok-calc"), add); err != nil || r.GetResult() != 5 {
			t.Errorf("%s: with the token: %v %v", p, r, err)
		}
		if _, err := c.Evaluate(token("tok-calc"), &calculatorv1.EvaluateRequest{Expression: "1"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: a method the principal may not call: %v, want PERMISSION_DENIED", p, err)
		}
	}
	for _, tc := range []struct {
		name, method, path, body, token string
		httpCode                        int
		code                            codes.Code
	}{
		{"REST without a token", "GET", "/v1/calculate?operator=OPERATOR_ADD&lhs=2&rhs=3", "", "", 401, codes.Unauthenticated},
		{"REST with a wrong token", "GET", "/v1/calculate?operator=OPERATOR_ADD&lhs=2&rhs=3", "", "wrong", 401, codes.Unauthenticated},
		{"REST, not allowed", "POST", "/v1/evaluate", `{"expression":"1"}`, "tok-calc", 403, codes.PermissionDenied},
		{"Connect without a token", "POST", "/calculator.v1.CalculatorService/Calculate", `{}`, "", 401, codes.Unauthenticated},
	} {
		h := map[string]string{"Content-Type": "application/json"}
		if tc.token != "" {
			h["Authorization"] = "Bearer " + tc.token
		}
		r := do(t, srv, tc.method, tc.path, tc.body, h)
		if r.code != tc.httpCode {
			t.Errorf("%s: HTTP %d %s, want %d", tc.name, r.code, r.body, tc.httpCode)
		}
		if strings.HasPrefix(tc.name, "REST") {
			if st := decodeStatus(t, r); codes.Code(st.Code) != tc.code {
				t.Errorf("%s: code %d, want %v", tc.name, st.Code, tc.code)
			}
		}
	}
}

// TestCORS: off by default, no answer carries an Access-Control header;
// on, a preflight is answered for the configured origins only, and their
// calls may be read.
func TestCORS(t *testing.T) {
	preflight := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "content-type,connect-protocol-version"}
	}
	call := func(origin string) map[string]string {
		return map[string]string{"Origin": origin, "Content-Type": "application/json", "Connect-Protocol-Version": "1"}
	}
	const path, body = "/calculator.v1.CalculatorService/Evaluate", `{"expression":"1+1"}`
	noCORS := func(t *testing.T, what string, r response) {
		t.Helper()
		for k := range r.header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s: %s: %v", what, k, r.header[k])
			}
		}
	}

	t.Run("off", func(t *testing.T) {
		srv := calcdtest.Start(t, calcd.Config{})
		noCORS(t, "preflight", do(t, srv, http.MethodOptions, path, "", preflight("https://app.example")))
		r := do(t, srv, http.MethodPost, path, body, call("https://app.example"))
		if r.code != 200 {
			t.Errorf("a call with an Origin: HTTP %d %s", r.code, r.body)
		}
		noCORS(t, "call", r)
		noCORS(t, "REST", do(t, srv, http.MethodGet, "/v1/calculate?operator=OPERATOR_ADD&lhs=1&rhs=1", "", call("https://app.example")))
	})

	t.Run("on", func(t *testing.T) {
		srv := calcdtest.Start(t, calcd.Config{HTTP: httpserver.Options{CORS: httpserver.CORS{AllowedOrigins: []string{"https://app.example"}}}})
		r := do(t, srv, http.MethodOptions, path, "", preflight("https://app.example"))
		if r.code != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			r.header.Get("Access-Control-Allow-Methods") != "GET, POST" || r.header.Get("Access-Control-Max-Age") != "7200" {
			t.Errorf("preflight from the allowed origin: HTTP %d %v", r.code, r.header)
		}
		allowed := strings.ToLower(r.header.Get("Access-Control-Allow-Headers"))
		for _, h := range []string{"content-type", "connect-protocol-version", "authorization", "x-grpc-web", "grpc-timeout"} {
			if !strings.Contains(allowed, h) {
				t.Errorf("preflight: %s not among the allowed headers %q", h, allowed)
			}
		}
		for _, origin := range []string{"https://evil.example", "http://app.example", "https://app.example:8443"} {
			r := do(t, srv, http.MethodOptions, path, "", preflight(origin))
			if r.code != http.StatusForbidden {
				t.Errorf("preflight from %s: HTTP %d, want 403", origin, r.code)
			}
			noCORS(t, "preflight from "+origin, r)
		}
		if r := do(t, srv, http.MethodOptions, path, "", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "DELETE"}); r.code != http.StatusForbidden {
			t.Errorf("preflight for DELETE: HTTP %d, want 403", r.code)
		}
		if n := srv.HTTP.Stats().RequestsRefused["403"]; n != 4 {
			t.Errorf("RequestsRefused[403] = %d after four refused preflights, want 4", n)
		}
		r = do(t, srv, http.MethodPost, path, body, call("https://app.example"))
		if r.code != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Grpc-Status") {
			t.Errorf("a call from the allowed origin: HTTP %d %v", r.code, r.header)
		}
		r = do(t, srv, http.MethodPost, path, body, call("https://evil.example"))
		noCORS(t, "a call from another origin", r)
	})

	t.Run("any origin", func(t *testing.T) {
		srv := calcdtest.Start(t, calcd.Config{HTTP: httpserver.Options{CORS: httpserver.CORS{AllowedOrigins: []string{"*"}, MaxAge: time.Minute}}})
		r := do(t, srv, http.MethodOptions, "/v1/calculate", "", map[string]string{"Origin": "https://any.example", "Access-Control-Request-Method": "GET"})
		if r.code != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("Access-Control-Max-Age") != "60" {
			t.Errorf("preflight: HTTP %d %v", r.code, r.header)
		}
	})
}

// TestHeaderLimit: a request header over MaxHeaderBytes (net/http
// allows 4 KiB more on HTTP/1.1) is refused with 431.
func TestHeaderLimit(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{HTTP: httpserver.Options{MaxHeaderBytes: 4096}})
	c, err := net.Dial("tcp", srv.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/calculate?operator=OPERATOR_ADD&lhs=1&rhs=1 HTTP/1.1\r\nHost: calc\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 9000))
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 431") {
		t.Errorf("%q %v, want 431", line, err)
	}
	if r := do(t, srv, http.MethodGet, "/v1/calculate?operator=OPERATOR_ADD&lhs=1&rhs=1", "", map[string]string{"X-Big": strings.Repeat("a", 3000)}); r.code != 200 {
		t.Errorf("a header under the limit: HTTP %d %s", r.code, r.body)
	}
}

// TestBodyTimeout: a request whose body does not arrive within
// BodyTimeout is ended and its connection closed; one whose body arrived
// may take longer than that in its handler.
func TestBodyTimeout(t *testing.T) {
	slow := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		time.Sleep(300 * time.Millisecond) // three BodyTimeouts
		return handler(ctx, req)
	}
	srv := calcdtest.Start(t, calcd.Config{HTTP: httpserver.Options{BodyTimeout: 100 * time.Millisecond},
		UnaryInterceptors: []grpc.UnaryServerInterceptor{slow}})
	c, err := net.Dial("tcp", srv.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/evaluate HTTP/1.1\r\nHost: calc\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"expr")
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c) // until the server closes
	if err != nil {
		t.Fatalf("the server did not close a connection whose body stalled: %v (read %q)", err, got)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 408")) || !bytes.Contains(got, []byte(`"code":4`)) {
		t.Errorf("a stalled body: %q, want 408 DEADLINE_EXCEEDED", got)
	}
	// Over HTTP/2 the stream is answered 408 and the connection lives on.
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest(http.MethodPost, "http://"+srv.HTTPAddr+"/v1/evaluate", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	h2 := calcdtest.HTTPClientFor(t, true, nil)
	go pw.Write([]byte(`{"expr`))
	resp, err := h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || resp.ProtoMajor != 2 {
		t.Errorf("a stalled body over HTTP/2: %s %s, want HTTP/2 408", resp.Proto, resp.Status)
	}
	if n := srv.HTTP.Stats().RequestsRefused["408"]; n != 2 {
		t.Errorf("RequestsRefused[408] = %d after two stalled bodies, want 2", n)
	}
	for _, p := range []string{"connect-json", "connect-json-http1"} {
		r, err := srv.HTTPClient(t, p).Evaluate(context.Background(), &calculatorv1.EvaluateRequest{Expression: "6*7"})
		if err != nil || r.GetResult() != "42" {
			t.Errorf("%s: a handler slower than BodyTimeout: %v %v", p, r, err)
		}
	}
	if r, err := srv.RESTClient(t).Evaluate(context.Background(), &calculatorv1.EvaluateRequest{Expression: "6*7"}); err != nil || r.GetResult() != "42" {
		t.Errorf("REST: a handler slower than BodyTimeout: %v %v", r, err)
	}
}

// TestConnectionLimit: a connection past MaxConnectionsPerAddr is closed
// on accept; those admitted are served.
func TestConnectionLimit(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{HTTP: httpserver.Options{MaxConnectionsPerAddr: 2}})
	var conns []net.Conn
	get := func(c net.Conn) (string, error) {
		if _, err := fmt.Fprintf(c, "GET /v1/calculate?operator=OPERATOR_ADD&lhs=1&rhs=1 HTTP/1.1\r\nHost: calc\r\n\r\n"); err != nil {
			return "", err
		}
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return "", err
		}
		return bufio.NewReader(c).ReadString('\n')
	}
	for i := range 3 {
		c, err := net.Dial("tcp", srv.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		line, err := get(c)
		switch {
		case i < 2 && (err != nil || !strings.HasPrefix(line, "HTTP/1.1 200")):
			t.Errorf("connection %d: %q %v, want 200", i, line, err)
		case i == 2 && err == nil:
			t.Errorf("connection 3 of 2 allowed: %q", line)
		}
	}
	if line, err := get(conns[0]); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Errorf("an admitted connection after the refusal: %q %v", line, err)
	}
}

// TestMetricsLabel: calls over the HTTP port, whatever their protocol,
// count in the per-RPC metrics under transport="http".
func TestMetricsLabel(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{RPCMetrics: true})
	ctx := context.Background()
	add := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}
	clients := []calculatorv1.CalculatorServiceClient{srv.RESTClient(t)}
	for _, p := range calcdtest.HTTPProtocols {
		clients = append(clients, srv.HTTPClient(t, p))
	}
	for _, c := range clients {
		if _, err := c.Calculate(ctx, add); err != nil {
			t.Fatal(err)
		}
		_, _ = c.Calculate(ctx, &calculatorv1.CalculateRequest{})
	}
	families, err := srv.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["grpc_method"] == "Calculate" {
				got[l["transport"]+" "+l["grpc_code"]] += m.GetCounter().GetValue()
			}
		}
	}
	n := float64(len(clients))
	if got["http OK"] != n || got["http InvalidArgument"] != n || got["grpc OK"] != 0 {
		t.Errorf("grpc_server_handled_total of Calculate by transport and code: %v, want http OK and InvalidArgument %v each", got, n)
	}
}

// TestDrainLetsStreamsFinish: Shutdown lets a Connect stream over HTTP/2
// that is open go on to its end, then returns.
func TestDrainLetsStreamsFinish(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := srv.HTTPClient(t, "connect-proto").CalculateStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(i int64) {
		t.Helper()
		if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: i, Rhs: i}}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || r.GetResult() != 2*i {
			t.Fatalf("%d+%d: %v %v", i, i, r, err)
		}
	}
	ask(1)
	drained := make(chan error, 1)
	go func() { drained <- srv.HTTP.Shutdown(ctx) }()
	// The listener closes: a new connection is refused (soon).
	for {
		c, err := net.Dial("tcp", srv.HTTPAddr)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-drained:
		t.Fatalf("Shutdown returned %v with a stream open", err)
	default:
	}
	ask(2)
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("the stream's end: %v, want io.EOF", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestDrainDeadline: at Shutdown's deadline a call still running is
// cancelled and Shutdown returns the context's error.
func TestDrainDeadline(t *testing.T) {
	started := make(chan struct{}, 1)
	wait := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	srv := calcdtest.Start(t, calcd.Config{UnaryInterceptors: []grpc.UnaryServerInterceptor{wait}})
	called := make(chan error, 1)
	go func() {
		_, err := srv.HTTPClient(t, "connect-json").Evaluate(context.Background(), &calculatorv1.EvaluateRequest{Expression: "1"})
		called <- err
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.HTTP.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the context's deadline", err)
	}
	if err := <-called; status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Errorf("the call cut by the drain: %v, want UNAVAILABLE", err)
	}
}

// TestHandle: handlers added with Handle share the port with the RPC
// routes; a path nobody handles is a JSON 404.
func TestHandle(t *testing.T) {
	s := httpserver.New(httpserver.Options{GRPC: grpcserver.Options{Logger: slog.New(slog.DiscardHandler)}})
	calculatorv1.RegisterCalculatorServiceServer(s, calculatorv1.UnimplementedCalculatorServiceServer{})
	s.Handle("/hello", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	defer func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-served; !errors.Is(err, httpserver.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	hc := calcdtest.HTTPClientFor(t, false, nil)
	get := func(path string) (int, string) {
		resp, err := hc.Get("http://" + lis.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("/hello"); code != 200 || body != "hello" {
		t.Errorf("GET /hello: %d %q", code, body)
	}
	code, body := get("/elsewhere")
	var st restStatus
	if err := json.Unmarshal([]byte(body), &st); code != 404 || err != nil || codes.Code(st.Code) != codes.Unimplemented {
		t.Errorf("GET /elsewhere: %d %q (%v), want 404 UNIMPLEMENTED", code, body, err)
	}
	c := srvClient(hc, lis.Addr().String())
	if _, err := c.Calculate(context.Background(), &calculatorv1.CalculateRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("the RPC routes beside Handle's: %v, want the service's UNIMPLEMENTED", err)
	}
}

func srvClient(hc *http.Client, addr string) calculatorv1.CalculatorServiceClient {
	return calcdtest.NewConnectClient(hc, "http://"+addr, connect.WithProtoJSON())
}

// TestTLS: with a TLS configuration the HTTP port serves HTTPS only, HTTP/2
// or HTTP/1.1 as ALPN chooses, TLS 1.3; under mutual TLS a verified client
// certificate is a principal to the token policy, as on the other ports.
func TestTLS(t *testing.T) {
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := tlsconfig.Files{Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem"), ClientCA: filepath.Join(dir, "ca.pem")}
	server, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{f.Cert: server.CertPEM, f.Key: server.KeyPEM, f.ClientCA: ca.CertPEM} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := tlsconfig.New(f, tlsconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "auth.json")
	if err := os.WriteFile(policy, []byte(`{"principals": [{"name": "dev", "certificate": "`+devcerts.ClientCommonName+`", "methods": ["/calculator.v1.CalculatorService/Evaluate"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := calcdtest.Start(t, calcd.Config{TLSConfig: r.Config(), Auth: a})
	client, err := ca.Client(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h2 := range []bool{true, false} {
		hc := calcdtest.HTTPClientFor(t, h2, cfg)
		resp, err := hc.Post("https://"+srv.HTTPAddr+"/v1/evaluate", "application/json", strings.NewReader(`{"expression":"6*7"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if wantMajor := map[bool]int{true: 2, false: 1}[h2]; resp.StatusCode != 200 || resp.ProtoMajor != wantMajor ||
			resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 || !strings.Contains(string(body), `"42"`) {
			t.Errorf("h2 %v: %s %s %s, want HTTP/%d 200 over TLS 1.3", h2, resp.Proto, resp.Status, body, wantMajor)
		}
		c := calcdtest.NewConnectClient(hc, "https://"+srv.HTTPAddr, connect.WithProtoJSON())
		if r, err := c.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "1+1"}); err != nil || r.GetResult() != "2" {
			t.Errorf("h2 %v: Connect over TLS: %v %v", h2, r, err)
		}
		if _, err := c.Calculate(ctx, &calculatorv1.CalculateRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("h2 %v: a method the certificate's principal may not call: %v, want PERMISSION_DENIED", h2, err)
		}
	}
	noCert := calcdtest.HTTPClientFor(t, true, &tls.Config{RootCAs: ca.Pool()})
	if _, err := noCert.Get("https://" + srv.HTTPAddr + "/v1/calculate"); err == nil {
		t.Error("a client without a certificate was served under mutual TLS")
	}
	// net/http answers a plaintext request on a TLS port 400.
	if resp, err := calcdtest.HTTPClientFor(t, false, nil).Get("http://" + srv.HTTPAddr + "/v1/calculate?operator=OPERATOR_ADD"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plaintext HTTP on the TLS port: %s, want 400", resp.Status)
		}
	}
}

// panicky panics in Calculate.
type panicky struct {
	calculatorv1.UnimplementedCalculatorServiceServer
}

func (panicky) Calculate(context.Context, *calculatorv1.CalculateRequest) (*calculatorv1.CalculateResponse, error) {
	panic("boom")
}

// TestPanicOverREST: a handler's panic is INTERNAL, HTTP 500, over REST
// too, and the port goes on serving.
func TestPanicOverREST(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{Service: panicky{}})
	for range 2 {
		r := do(t, srv, http.MethodGet, "/v1/calculate?operator=OPERATOR_ADD&lhs=1&rhs=1", "", nil)
		if st := decodeStatus(t, r); r.code != http.StatusInternalServerError || codes.Code(st.Code) != codes.Internal {
			t.Errorf("HTTP %d %s, want 500 INTERNAL", r.code, r.body)
		}
	}
}

// TestCompression: compressed requests are served (gzip over Connect and
// REST, snappy over gRPC as on the gRPC port), and one that decompresses
// past the message limit is RESOURCE_EXHAUSTED, not decompressed whole.
func TestCompression(t *testing.T) {
	const limit = 128 << 10
	srv := calcdtest.Start(t, calcd.Config{GRPC: grpcserver.Options{MaxRecvMsgSize: limit}})
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		io.WriteString(w, s)
		w.Close()
		return b.String()
	}
	bomb := gz(`{"expression":"1"}` + strings.Repeat(" ", 8<<20)) // 8 MiB of JSON whitespace in 8 KiB
	if len(bomb) > limit {
		t.Fatalf("the bomb is %d bytes compressed, over the limit itself", len(bomb))
	}
	for _, tc := range []struct {
		name, path, body, contentType string
		httpCode                      int
	}{
		{"Connect gzip", "/calculator.v1.CalculatorService/Evaluate", gz(`{"expression":"6*7"}`), "application/json", 200},
		{"REST gzip", "/v1/evaluate", gz(`{"expression":"6*7"}`), "application/json", 200},
		{"Connect gzip bomb", "/calculator.v1.CalculatorService/Evaluate", bomb, "application/json", 429},
		{"REST gzip bomb", "/v1/evaluate", bomb, "application/json", 429},
	} {
		r := do(t, srv, http.MethodPost, tc.path, tc.body, map[string]string{"Content-Type": tc.contentType, "Content-Encoding": "gzip"})
		if r.code != tc.httpCode || (r.code == 200) != strings.Contains(r.body, `"42"`) ||
			(r.code == 429) != strings.Contains(r.body, "decompressed request message is over the limit") {
			t.Errorf("%s: HTTP %d %s, want %d", tc.name, r.code, r.body, tc.httpCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := connect.NewClient[calculatorv1.EvaluateRequest, calculatorv1.EvaluateResponse](calcdtest.HTTPClientFor(t, true, nil),
		"http://"+srv.HTTPAddr+"/calculator.v1.CalculatorService/Evaluate", connect.WithSendGzip(), connect.WithGRPCWeb())
	if r, err := c.CallUnary(ctx, connect.NewRequest(&calculatorv1.EvaluateRequest{Expression: "6*7"})); err != nil || r.Msg.GetResult() != "42" {
		t.Errorf("gRPC-Web, gzip: %v %v", r, err)
	}
	snappyClient := calculatorv1.NewCalculatorServiceClient(calcdtest.DialGRPCAt(t, srv.HTTPAddr))
	long := strings.Repeat("1+", 200) + "1"
	if r, err := snappyClient.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: long}, grpc.UseCompressor("snappy")); err != nil || r.GetResult() != "201" {
		t.Errorf("gRPC, snappy: %v %v", r, err)
	}
}

// TestDeadlineAndMetadataReachTheHandler: over every protocol of the HTTP
// port the handler sees the caller's deadline (Connect-Timeout-Ms,
// grpc-timeout, REST's X-Server-Timeout) and its headers as gRPC metadata.
func TestDeadlineAndMetadataReachTheHandler(t *testing.T) {
	type seen struct {
		left time.Duration
		tag  string
	}
	got := make(chan seen, 1)
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var s seen
		if d, ok := ctx.Deadline(); ok {
			s.left = time.Until(d)
		}
		if v := metadata.ValueFromIncomingContext(ctx, "x-tag"); len(v) > 0 {
			s.tag = v[0]
		}
		got <- s
		return handler(ctx, req)
	}
	srv := calcdtest.Start(t, calcd.Config{UnaryInterceptors: []grpc.UnaryServerInterceptor{record}})
	clients := map[string]calculatorv1.CalculatorServiceClient{"rest": srv.RESTClient(t)}
	for _, p := range calcdtest.HTTPProtocols {
		clients[p] = srv.HTTPClient(t, p)
	}
	for p, c := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-tag", p)
		_, err := c.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 2})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if s := <-got; s.left < 59*time.Minute || s.left > time.Hour || s.tag != p {
			t.Errorf("%s: the handler saw %v left of a 1h deadline and x-tag %q", p, s.left, s.tag)
		}
	}
}

// TestMaxConnectionAge: past MaxConnectionAge a connection is drained and
// its clients move to a new one without a failed call: gRPC and Connect
// over HTTP/2 (GOAWAY) and an idle HTTP/1.1 connection (closed). Past the
// grace as well, a stream still open ends with UNAVAILABLE.
func TestMaxConnectionAge(t *testing.T) {
	const age = 150 * time.Millisecond
	srv := calcdtest.Start(t, calcd.Config{HTTP: httpserver.Options{MaxConnectionAge: age, MaxConnectionAgeGrace: 300 * time.Millisecond}})
	var dials atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	gc, err := grpc.NewClient(srv.HTTPAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	h2 := &http.Transport{DialContext: dial, Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	defer h2.CloseIdleConnections()
	grpcClient := calculatorv1.NewCalculatorServiceClient(gc)
	connectEvaluate := connect.NewClient[calculatorv1.EvaluateRequest, calculatorv1.EvaluateResponse](&http.Client{Transport: h2},
		"http://"+srv.HTTPAddr+"/calculator.v1.CalculatorService/Evaluate", connect.WithProtoJSON())
	evaluate := map[string]func(context.Context, *calculatorv1.EvaluateRequest) (*calculatorv1.EvaluateResponse, error){
		"grpc": func(ctx context.Context, in *calculatorv1.EvaluateRequest) (*calculatorv1.EvaluateResponse, error) {
			return grpcClient.Evaluate(ctx, in)
		},
		"connect-json": func(ctx context.Context, in *calculatorv1.EvaluateRequest) (*calculatorv1.EvaluateResponse, error) {
			r, err := connectEvaluate.CallUnary(ctx, connect.NewRequest(in))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		},
	}
	for name, call := range evaluate {
		t.Run(name, func(t *testing.T) {
			start := dials.Load()
			calls := 0
			// Until the client has had to open three more connections (or
			// 10 s, the bound on a slow machine): every call succeeds.
			for deadline := time.Now().Add(10 * time.Second); dials.Load()-start < 3 && time.Now().Before(deadline); calls++ {
				r, err := call(context.Background(), &calculatorv1.EvaluateRequest{Expression: "6*7"})
				if err != nil || r.GetResult() != "42" {
					t.Fatalf("call %d: %v %v", calls, r, err)
				}
			}
			if n := dials.Load() - start; n < 3 {
				t.Errorf("%d connections in 10 s of calls with a max connection age of %v", n, age)
			}
			t.Logf("%d calls over %d connections", calls, dials.Load()-start)
		})
	}

	t.Run("http1 idle", func(t *testing.T) {
		c, err := net.Dial("tcp", srv.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v1/calculate?operator=OPERATOR_ADD&lhs=1&rhs=1 HTTP/1.1\r\nHost: calc\r\n\r\n")
		if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("HTTP %d", resp.StatusCode)
		}
		// Kept alive, then closed by the server once aged.
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("an aged idle HTTP/1.1 connection: read %d bytes, %v; want the server to close it", n, err)
		}
	})

	t.Run("stream past the grace", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := grpcClient.CalculateStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&calculatorv1.CalculateStreamRequest{Id: 1, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}}); err != nil {
			t.Fatal(err)
		}
		if r, err := st.Recv(); err != nil || r.GetResult() != 2 {
			t.Fatalf("first answer: %v %v", r, err)
		}
		_, err = st.Recv() // the stream stays open until the grace is over
		if status.Code(err) != codes.Unavailable {
			t.Errorf("a stream open past the age and its grace: %v, want UNAVAILABLE", err)
		}
	})
}
