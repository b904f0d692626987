package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
	"github.com/calcrpc/calc/server/endpoint"
	"github.com/calcrpc/calc/server/grpcserver"
	"github.com/calcrpc/calc/server/tcpserver"
)

// subcommandCase is a run of a calc subcommand and what it must do.
type subcommandCase struct {
	name   string
	args   []string
	stdin  string
	code   int
	stdout string // all of it, or with stdoutPart a part of it
	stderr string // a part of it; "" means none
	// stdoutPart makes stdout a part of the output rather than all of it.
	stdoutPart bool
}

// runSubcommandCases runs every case against addrs, a server's address by
// transport name, once over each transport: one body, two transports.
func runSubcommandCases(t *testing.T, addrs map[string]string, tests []subcommandCase) {
	t.Helper()
	for _, transport := range calcdtest.Transports {
		for _, tt := range tests {
			t.Run(transport+"/"+tt.name, func(t *testing.T) {
				args := append([]string{"--transport", transport, "--addr", addrs[transport]}, tt.args...)
				r := calc(args, tt.stdin, noEnv)
				stdoutOK := r.stdout == tt.stdout
				if tt.stdoutPart {
					stdoutOK = strings.Contains(r.stdout, tt.stdout)
				}
				stderrOK := strings.Contains(r.stderr, tt.stderr) && (tt.stderr != "" || r.stderr == "")
				if r.code != tt.code || !stdoutOK || !stderrOK {
					t.Fatalf("calc %q: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d, stdout (part: %v):\n%s\nstderr with %q", args, r.code, r.stdout, r.stderr, tt.code, tt.stdoutPart, tt.stdout, tt.stderr)
				}
			})
		}
	}
}

// addrs returns srv's address by transport name.
func addrs(srv *calcdtest.Servers) map[string]string {
	return map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}
}

func TestList(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	runSubcommandCases(t, addrs(srv), []subcommandCase{
		{name: "services", args: []string{"list"},
			stdout: "calculator.v1.CalculatorService\ngrpc.health.v1.Health\ngrpc.reflection.v1.ServerReflection\ngrpc.reflection.v1alpha.ServerReflection\n"},
		{name: "methods", args: []string{"list", "calculator.v1.CalculatorService"},
			stdout: "calculator.v1.CalculatorService.Calculate\ncalculator.v1.CalculatorService.CalculateStream\ncalculator.v1.CalculatorService.Evaluate\n"},
		{name: "methods, flag last, JSON", args: []string{"list", "grpc.health.v1.Health", "--json"},
			stdout: `["grpc.health.v1.Health.Check","grpc.health.v1.Health.List","grpc.health.v1.Health.Watch"]` + "\n"},
		{name: "unknown service", args: []string{"list", "calculator.v1.Nope"}, code: 1,
			stderr: "calc: NOT_FOUND: the server knows no symbol calculator.v1.Nope"},
		{name: "not a service", args: []string{"list", "calculator.v1.CalculateRequest"}, code: 1,
			stderr: "calc: NOT_FOUND: calculator.v1.CalculateRequest is a message, not a service\n"},
		{name: "not a name", args: []string{"list", "2 + 3"}, code: 1,
			stderr: `calc: INVALID_ARGUMENT: "2 + 3" is not a full name`},
		{name: "too many arguments", args: []string{"list", "a", "b"}, code: 2,
			stderr: "calc: usage: calc list [SERVICE]"},
		{name: "unknown flag", args: []string{"list", "--bogus"}, code: 2,
			stderr: "calc: unknown flag --bogus; calc --help lists the flags\n"},
	})
}

func TestDescribe(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	runSubcommandCases(t, addrs(srv), []subcommandCase{
		{name: "service", args: []string{"describe", "calculator.v1.CalculatorService"}, stdoutPart: true,
			stdout: "calculator.v1.CalculatorService is a service:\n" +
				"// CalculatorService computes arithmetic. Errors are gRPC statuses:\n" +
				"// INVALID_ARGUMENT (with a google.rpc.BadRequest field violation) for a\n"},
		{name: "service's streaming method", args: []string{"describe", "calculator.v1.CalculatorService"}, stdoutPart: true,
			stdout: "  // does not end the stream.\n" +
				"  rpc CalculateStream ( stream .calculator.v1.CalculateStreamRequest ) returns ( stream .calculator.v1.CalculateStreamResponse );\n}\n"},
		{name: "method", args: []string{"describe", "calculator.v1.CalculatorService.Calculate"},
			stdout: "calculator.v1.CalculatorService.Calculate is a method:\n" +
				"// Calculate applies one operator to two int64 operands with checked\n" +
				"// arithmetic: a result that does not fit in an int64 is OUT_OF_RANGE.\n" +
				"rpc Calculate ( .calculator.v1.CalculateRequest ) returns ( .calculator.v1.CalculateResponse );\n"},
		{name: "message with a oneof", args: []string{"describe", "calculator.v1.CalculateStreamResponse"},
			stdout: "calculator.v1.CalculateStreamResponse is a message:\n" +
				"// CalculateStreamResponse answers the CalculateStreamRequest with the same id.\n" +
				"message CalculateStreamResponse {\n" +
				"  // id is the id of the request this response answers.\n" +
				"  uint64 id = 1;\n" +
				"  // outcome is the result of the calculation or the reason it failed.\n" +
				"  oneof outcome {\n" +
				"    // result is the calculation's result.\n" +
				"    int64 result = 2;\n" +
				"    // error is why the calculation failed.\n" +
				"    .calculator.v1.CalculationError error = 3;\n" +
				"  }\n" +
				"}\n"},
		{name: "enum", args: []string{"describe", "calculator.v1.Operator"}, stdoutPart: true,
			stdout: "calculator.v1.Operator is an enum:\n" +
				"// Operator is the arithmetic operation Calculate applies to lhs and rhs.\n" +
				"enum Operator {\n" +
				"  // OPERATOR_UNSPECIFIED is the zero value; a request that leaves it set is\n" +
				"  // INVALID_ARGUMENT.\n" +
				"  OPERATOR_UNSPECIFIED = 0;\n"},
		{name: "enum value", args: []string{"describe", "calculator.v1.OPERATOR_ADD"},
			stdout: "calculator.v1.OPERATOR_ADD is an enum value:\n// OPERATOR_ADD computes lhs + rhs.\nOPERATOR_ADD = 1;\n"},
		{name: "field", args: []string{"describe", "calculator.v1.CalculateRequest.operator"},
			stdout: "calculator.v1.CalculateRequest.operator is a field:\n" +
				"// operator is the operation to apply; it must not be OPERATOR_UNSPECIFIED.\n" +
				".calculator.v1.Operator operator = 1;\n"},
		{name: "a file the schema imports from the server", args: []string{"describe", "grpc.health.v1.HealthCheckResponse.ServingStatus"}, stdoutPart: true,
			stdout: "enum ServingStatus {\n  UNKNOWN = 0;\n  SERVING = 1;\n"},
		{name: "unknown symbol", args: []string{"describe", "calculator.v1.Nope"}, code: 1,
			stderr: "calc: NOT_FOUND: the server knows no symbol calculator.v1.Nope"},
		{name: "no symbol", args: []string{"describe"}, code: 2, stderr: "calc: usage: calc describe SYMBOL"},
	})
}

func TestCall(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	const (
		calculate = "calculator.v1.CalculatorService/Calculate"
		evaluate  = "calculator.v1.CalculatorService.Evaluate"
		stream    = "calculator.v1.CalculatorService/CalculateStream"
	)
	threeLines := `{"id": 1, "calculation": {"operator": "OPERATOR_ADD", "lhs": 2, "rhs": 3}}
{"id": 2, "calculation": {"operator": "OPERATOR_DIVIDE", "lhs": 1}}
{"id": 3, "calculation": {"operator": "OPERATOR_POWER", "lhs": 2, "rhs": 10}}
`
	threeResponses := `{"id":"1","result":"5"}
{"id":"2","error":{"code":3,"message":"division by zero: 1 / 0","field":"rhs"}}
{"id":"3","result":"1024"}
`
	runSubcommandCases(t, addrs(srv), []subcommandCase{
		{name: "unary, JSON argument", args: []string{"call", calculate, `{"operator":"OPERATOR_MULTIPLY","lhs":6,"rhs":7}`},
			stdout: "{\n  \"result\": \"42\"\n}\n"},
		{name: "unary, dotted method, stdin, --json", args: []string{"call", evaluate, "--json"}, stdin: `{"expression": "7 / 2"}`,
			stdout: `{"result":"3.5","exact":true}` + "\n"},
		{name: "unary, - for stdin", args: []string{"--json", "call", evaluate, "-"}, stdin: `{"expression": "1 / 3"}` + "\n",
			stdout: `{"result":"0.3333333333333333333333333333333333"}` + "\n"},
		{name: "division by zero", args: []string{"call", calculate, `{"operator":"OPERATOR_DIVIDE","lhs":2}`}, code: 1,
			stderr: "calc: INVALID_ARGUMENT: division by zero: 2 / 0\n" +
				`  {"@type":"type.googleapis.com/google.rpc.BadRequest","field_violations":[{"field":"rhs","description":"division by zero: 2 / 0","reason":"DIVISION_BY_ZERO"}]}` + "\n"},
		{name: "division by zero, --json", args: []string{"call", calculate, `{"operator":"OPERATOR_DIVIDE","lhs":2}`, "--json"}, code: 1, stdoutPart: true,
			stdout: `"code":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest"`},
		{name: "bidi, three lines", args: []string{"call", stream, "--json"}, stdin: threeLines, stdout: threeResponses},
		{name: "bidi, concatenated", args: []string{"call", stream, "--json"}, stdin: strings.ReplaceAll(threeLines, "\n", ""), stdout: threeResponses},
		{name: "bidi, indented", args: []string{"call", stream}, stdin: threeLines[:strings.Index(threeLines, "\n")], stdout: "{\n  \"id\": \"1\",\n  \"result\": \"5\"\n}\n"},
		{name: "bidi, no requests", args: []string{"call", stream}},
		{name: "bidi, bad JSON", args: []string{"call", stream}, stdin: threeLines + `{"id": 4`, code: 2, stdoutPart: true,
			stderr: "calc: request 4 is not JSON: unexpected EOF\n"},
		{name: "bad JSON", args: []string{"call", calculate, `{"lhs": 1`}, code: 2, stderr: "calc: request 1 is not JSON: unexpected EOF\n"},
		{name: "not JSON", args: []string{"call", calculate, `lhs=1`}, code: 2, stderr: "calc: request 1 is not JSON: invalid character 'l'"},
		{name: "unknown field", args: []string{"call", calculate, `{"lhs": 1, "bogus": 2}`}, code: 2,
			stderr: `calc: request 1 is not a calculator.v1.CalculateRequest: `}, // then protojson's error, spaced at random
		{name: "unknown field, the error", args: []string{"call", calculate, `{"lhs": 1, "bogus": 2}`}, code: 2, stderr: `unknown field "bogus"` + "\n"},
		{name: "two requests for a unary method", args: []string{"call", calculate}, stdin: "{}\n{}\n", code: 2,
			stderr: "calc: more than one request for a method that takes one\n"},
		{name: "no request for a unary method", args: []string{"call", calculate}, code: 2,
			stderr: "calc: no request: give a calculator.v1.CalculateRequest in JSON as an argument or on stdin\n"},
		{name: "unknown method", args: []string{"call", "calculator.v1.CalculatorService/Nope", "{}"}, code: 1,
			stderr: "calc: NOT_FOUND: the server knows no symbol calculator.v1.CalculatorService.Nope"},
		{name: "not a method", args: []string{"call", "calculator.v1.CalculateRequest", "{}"}, code: 1,
			stderr: "calc: NOT_FOUND: calculator.v1.CalculateRequest is a message, not a method\n"},
		{name: "server streaming until the deadline", args: []string{"call", "grpc.health.v1.Health/Watch", "{}", "--timeout", "500ms"}, code: 1,
			stdout: "{\n  \"status\": \"SERVING\"\n}\n", stderr: "calc: DEADLINE_EXCEEDED: "},
		{name: "no method", args: []string{"call"}, code: 2, stderr: "calc: usage: calc call METHOD [JSON|-]"},
		{name: "JSON in pieces", args: []string{"call", calculate, "{}", "{}"}, code: 2, stderr: "calc: usage: calc call METHOD [JSON|-]"},
	})
}

func TestHealth(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	closed := closedAddr(t)
	runSubcommandCases(t, addrs(srv), []subcommandCase{
		{name: "server", args: []string{"health"}, stdout: "SERVING\n"},
		{name: "service, --json", args: []string{"health", "calculator.v1.CalculatorService", "--json"}, stdout: `{"status":"SERVING"}` + "\n"},
		{name: "unknown service", args: []string{"health", "calculator.v1.Nope"}, code: 3, stderr: "calc: NOT_FOUND: unknown service\n"},
		{name: "closed port", args: []string{"health", "--addr", closed}, code: 2, stderr: "calc: UNAVAILABLE: "},
		{name: "too many arguments", args: []string{"health", "a", "b"}, code: 1, stderr: "calc: usage: calc health [SERVICE]"},
		{name: "unknown flag", args: []string{"--bogus", "health"}, code: 1, stderr: "calc: unknown flag --bogus"},
		{name: "bad flag value", args: []string{"health", "--timeout", "soon"}, code: 1, stderr: `invalid value "soon" for flag -timeout`},
	})
	wrong := map[string]string{"tcp": srv.GRPCAddr, "grpc": srv.TCPAddr}
	runSubcommandCases(t, wrong, []subcommandCase{
		{name: "wrong port", args: []string{"health"}, code: 2, stderr: ": use --transport "},
	})
}

// endpointServer is what TestHealthNotServing needs of either endpoint.
type endpointServer interface {
	grpc.ServiceRegistrar
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// TestHealthNotServing checks that a service reported NOT_SERVING exits 4
// over every transport, against a server whose health says so.
func TestHealthNotServing(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("draining", healthpb.HealthCheckResponse_NOT_SERVING)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tcp, gs := tcpserver.New(tcpserver.Options{Logger: logger}), grpcserver.New(grpcserver.Options{Logger: logger})
	addrs := map[string]string{}
	for name, s := range map[string]endpointServer{"tcp": tcp, "grpc": gs} {
		healthpb.RegisterHealthServer(s, hs)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[name] = l.Addr().String()
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("%s shutdown: %v", name, err)
			}
			if err := <-served; !errors.Is(err, endpoint.ErrServerClosed) {
				t.Errorf("%s Serve returned %v", name, err)
			}
		})
	}
	runSubcommandCases(t, addrs, []subcommandCase{
		{name: "not serving", args: []string{"health", "draining"}, code: 4, stdout: "NOT_SERVING\n"},
	})
}
