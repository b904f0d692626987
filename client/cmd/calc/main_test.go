package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calcrpc/calc/server/auth"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

func noEnv(string) string { return "" }

// env returns a getenv that reads vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// result is what a run of calc did.
type result struct {
	code           int
	stdout, stderr string
}

// calc runs calc with args, stdin and getenv.
func calc(args []string, stdin string, getenv func(string) string) result {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr, getenv)
	return result{code, stdout.String(), stderr.String()}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestVersion(t *testing.T) {
	r := calc([]string{"--version"}, "", noEnv)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "calc ") || !strings.Contains(r.stdout, ", commit ") || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
}

// TestFlagsAnywhere checks that flags are recognised before, among and
// after the words of an expression, that negative numbers stay in the
// expression, and that -- ends the flags.
func TestFlagsAnywhere(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	getenv := env(map[string]string{"CALC_ADDR": srv.TCPAddr})
	json5 := `{"exact":true,"expression":"2 + 3","result":"5"}` + "\n"
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string // a part of it
	}{
		{"flag first", []string{"--json", "2", "+", "3"}, 0, json5, ""},
		{"flag last", []string{"2", "+", "3", "--json"}, 0, json5, ""},
		{"flag among", []string{"2", "+", "--json", "3"}, 0, json5, ""},
		{"single dash", []string{"2", "+", "3", "-json"}, 0, json5, ""},
		{"value flag last", []string{"2", "+", "3", "--timeout", "5s"}, 0, "5\n", ""},
		{"value flag last with =", []string{"2", "+", "3", "--timeout=5s"}, 0, "5\n", ""},
		{"addr last", []string{"2", "+", "3", "--addr", srv.TCPAddr}, 0, "5\n", ""},
		{"negative operand", []string{"3", "-", "-2"}, 0, "5\n", ""},
		{"negative first", []string{"-2", "+", "1"}, 0, "-1\n", ""},
		{"negative first after a flag", []string{"--timeout", "5s", "-2", "+", "1"}, 0, "-1\n", ""},
		{"negative parenthesis", []string{"-(1", "+", "2)"}, 0, "-3\n", ""},
		{"negative decimal", []string{"-.5", "*", "2"}, 0, "-1\n", ""},
		{"double minus", []string{"5", "--3"}, 0, "8\n", ""},
		{"minus plus", []string{"5", "-+3"}, 0, "2\n", ""},
		{"quoted, starting with a minus and a space", []string{"- 2 + 3"}, 0, "1\n", ""},
		{"after --", []string{"--json", "--", "-2"}, 0, `{"exact":true,"expression":"-2","result":"-2"}` + "\n", ""},
		{"a flag after -- is in the expression", []string{"2", "--", "--json"}, 1, "", "calc: INVALID_ARGUMENT: "},
		{"unknown flag last", []string{"2", "+", "3", "--bogus"}, 2, "", "calc: unknown flag --bogus after the expression; calc --help lists the flags\n"},
		{"unknown flag first", []string{"--bogus", "2"}, 2, "", "calc: unknown flag --bogus; calc --help lists the flags\n"},
		{"missing value last", []string{"2", "+", "3", "--timeout"}, 2, "", "flag needs an argument: -timeout"},
		{"bad value last", []string{"2", "+", "3", "--timeout", "soon"}, 2, "", `invalid value "soon" for flag -timeout`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := calc(tt.args, "", getenv)
			if r.code != tt.code || r.stdout != tt.stdout || !strings.Contains(r.stderr, tt.stderr) || (tt.stderr == "" && r.stderr != "") {
				t.Fatalf("calc %q: exit %d, stdout %q, stderr %q; want %d, %q, stderr with %q", tt.args, r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestExitCodes checks calc's exit statuses: 0 for success, 1 for a failed
// call, 2 for a usage error.
func TestExitCodes(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	tcp := map[string]string{"CALC_ADDR": srv.TCPAddr}
	tests := []struct {
		name   string
		args   []string
		stdin  string
		env    map[string]string
		code   int
		stdout string
		stderr string // a part of it
	}{
		{name: "success", args: []string{"1", "+", "1"}, env: tcp, code: 0, stdout: "2\n"},
		{name: "success from stdin", stdin: "1 + 1\n2 * 3\n", env: tcp, code: 0, stdout: "2\n6\n"},
		{name: "help", args: []string{"--help"}, code: 0, stderr: "usage: calc"},
		{name: "help names the subcommands", args: []string{"--help"}, code: 0, stderr: "calc [flags] call METHOD [JSON|-]"},
		{name: "help after a subcommand", args: []string{"health", "--help"}, code: 0, stderr: "calc health: 0 SERVING, 1 usage"},
		{name: "version", args: []string{"--version"}, code: 0, stdout: "calc "},
		{name: "call failed", args: []string{"1", "/", "0"}, env: tcp, code: 1, stderr: "calc: INVALID_ARGUMENT: division by zero at offset 2\n"},
		{name: "call failed, JSON", args: []string{"--json", "1", "/", "0"}, env: tcp, code: 1, stdout: `"code":"INVALID_ARGUMENT"`},
		{name: "one of several calls failed", stdin: "1 + 1\n1 / 0\n2 * 3\n", env: tcp, code: 1, stdout: "2\n6\n", stderr: "calc: INVALID_ARGUMENT: division by zero"},
		{name: "server unreachable", args: []string{"1"}, env: map[string]string{"CALC_ADDR": closedAddr(t)}, code: 1, stderr: "calc: UNAVAILABLE: "},
		{name: "unknown flag", args: []string{"--bogus", "1"}, code: 2, stderr: "calc: unknown flag --bogus"},
		{name: "bad flag value", args: []string{"--timeout", "soon", "1"}, code: 2, stderr: `invalid value "soon" for flag -timeout`},
		{name: "unknown transport", args: []string{"--transport", "udp", "1"}, code: 2, stderr: `calc: unknown transport "udp"`},
		{name: "unknown transport from the environment", args: []string{"1"}, env: map[string]string{"CALC_TRANSPORT": "udp"}, code: 2, stderr: `calc: unknown transport "udp"`},
		{name: "compression over tcp", args: []string{"--compression", "gzip", "1"}, code: 2, stderr: "calc: --compression applies to --transport grpc only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := calc(tt.args, tt.stdin, env(tt.env))
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) || (tt.stdout == "" && r.stdout != "") ||
				!strings.Contains(r.stderr, tt.stderr) || (tt.stderr == "" && r.stderr != "") {
				t.Fatalf("calc %q: exit %d, stdout %q, stderr %q; want %d, stdout with %q, stderr with %q", tt.args, r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestGlobbedExpression checks that calc recognises an expression whose
// unquoted * the shell expanded into the names of the files in the
// current directory, says how to quote it and exits 2.
func TestGlobbedExpression(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	getenv := env(map[string]string{"CALC_ADDR": srv.TCPAddr})
	dir := t.TempDir()
	for _, name := range []string{"go.mod", "main.go", "3", ".hidden"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string // a part of it
	}{
		{"2 * 3", []string{"2", "go.mod", "main.go", "3"}, 2, "", "calc: the shell expanded * into file names (go.mod main.go); quote the expression: calc '2 * 3'\n"},
		{"2 * 3 * 4, a directory among the names", []string{"2", "go.mod", "main.go", "sub", "3", "go.mod", "main.go", "sub", "4"}, 2, "",
			"calc: the shell expanded * into file names (go.mod main.go sub go.mod main.go sub); quote the expression: calc '2 * 3 * 4'\n"},
		{"many names", []string{"1", "go.mod", "main.go", "sub", "go.mod", "main.go", "sub", "go.mod", "main.go", "sub", "go.mod", "2"}, 2, "",
			"calc: the shell expanded * into file names (go.mod main.go sub go.mod main.go sub go.mod main.go and 2 more); quote the expression: calc '1 * 2'\n"},
		{"with --json", []string{"2", "go.mod", "main.go", "3", "--json"}, 2, "", "quote the expression: calc '2 * 3'\n"},
		{"quoted", []string{"2 * 3"}, 0, "6\n", ""},
		{"a file named like a number", []string{"3", "/", "0"}, 1, "", "calc: INVALID_ARGUMENT: division by zero"},
		{"a word that names no file", []string{"2", "x", "3"}, 1, "", "calc: INVALID_ARGUMENT: "},
		{"a dot file, which * does not match", []string{"2", ".hidden", "3"}, 1, "", "calc: INVALID_ARGUMENT: "},
		{"help says to quote", []string{"--help"}, 0, "", "the shell expands an unquoted * into file names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := calc(tt.args, "", getenv)
			if r.code != tt.code || r.stdout != tt.stdout || !strings.Contains(r.stderr, tt.stderr) || (tt.stderr == "" && r.stderr != "") {
				t.Fatalf("calc %q: exit %d, stdout %q, stderr %q; want %d, %q, stderr with %q", tt.args, r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestWrongTransport checks that calc, pointed at the other transport's
// port of a calcd, fails at once and says which --transport to use.
func TestWrongTransport(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	closed := closedAddr(t)
	toGRPC := "calc: UNAVAILABLE: tcpconn: " + srv.GRPCAddr + " speaks HTTP/2, not calc's raw TCP protocol: this looks like a gRPC port: use --transport grpc\n"
	toTCP := srv.TCPAddr + " completed calc's raw TCP handshake, not gRPC's: this looks like calc's raw TCP port: use --transport tcp\n"
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string // all of it, or, ending in a space, a prefix of it without a hint
	}{
		{"tcp to the tcp port", []string{"--addr", srv.TCPAddr}, 0, "2\n", ""},
		{"grpc to the grpc port", []string{"--transport", "grpc", "--addr", srv.GRPCAddr}, 0, "2\n", ""},
		{"tcp to the grpc port", []string{"--addr", srv.GRPCAddr}, 1, "", toGRPC},
		{"grpc to the tcp port", []string{"--transport", "grpc", "--addr", srv.TCPAddr}, 1, "", "calc: UNAVAILABLE: " + toTCP},
		{"grpc to the tcp port past the deadline", []string{"--transport", "grpc", "--addr", srv.TCPAddr, "--timeout", "1ns"}, 1, "", "calc: DEADLINE_EXCEEDED: " + toTCP},
		{"tcp to a closed port", []string{"--addr", closed}, 1, "", "calc: UNAVAILABLE: "},
		{"grpc to a closed port", []string{"--transport", "grpc", "--addr", closed}, 1, "", "calc: UNAVAILABLE: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			args := append([]string{"--timeout", "30s", "1", "+", "1"}, tt.args...)
			r := calc(args, "", noEnv)
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Errorf("calc took %v", elapsed)
			}
			stderrOK := r.stderr == tt.stderr
			if strings.HasSuffix(tt.stderr, " ") { // a prefix, and no hint
				stderrOK = strings.HasPrefix(r.stderr, tt.stderr) && !strings.Contains(r.stderr, "--transport")
			}
			if r.code != tt.code || r.stdout != tt.stdout || !stderrOK {
				t.Fatalf("calc %q: exit %d, stdout %q, stderr %q; want %d, %q, stderr %q", args, r.code, r.stdout, r.stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestTimeout checks that a deadline too short for any call is reported
// as DEADLINE_EXCEEDED, exit 1, over every transport.
func TestTimeout(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	addrs := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}
	tests := []struct {
		name  string
		words []string
		stdin string
	}{
		{"expression", []string{"1", "+", "1"}, ""},
		{"stdin", nil, "1 + 1\n"},
	}
	for _, transport := range calcdtest.Transports {
		for _, tt := range tests {
			t.Run(transport+" "+tt.name, func(t *testing.T) {
				args := append([]string{"--transport", transport, "--addr", addrs[transport], "--timeout", "1ns"}, tt.words...)
				r := calc(args, tt.stdin, noEnv)
				if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "calc: DEADLINE_EXCEEDED: ") || strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "--transport") {
					t.Fatalf("calc %q: exit %d, stdout %q, stderr %q; want 1 and one line of DEADLINE_EXCEEDED", args, r.code, r.stdout, r.stderr)
				}
			})
		}
	}
}

// TestToken: against a calcd with a token policy, calc without a token
// fails with UNAUTHENTICATED (exit 1) and with CALC_TOKEN or --token it
// calculates, over both transports.
func TestToken(t *testing.T) {
	digest := sha256.Sum256([]byte("calc-test-token"))
	path := filepath.Join(t.TempDir(), "auth.json")
	policy := `{"principals": [{"name": "cli", "token_sha256": "` + hex.EncodeToString(digest[:]) + `", "methods": ["*"]}]}`
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := calcdtest.Start(t, calcd.Config{Auth: a})
	addrs := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}
	for _, tr := range calcdtest.Transports {
		base := []string{"--transport", tr, "--addr", addrs[tr]}
		if r := calc(append(base, "2", "+", "3"), "", noEnv); r.code != 1 || !strings.HasPrefix(r.stderr, "calc: UNAUTHENTICATED: ") {
			t.Errorf("%s: no token: %+v", tr, r)
		}
		env := func(k string) string {
			if k == "CALC_TOKEN" {
				return "calc-test-token"
			}
			return ""
		}
		if r := calc(append(base, "2", "+", "3"), "", env); r.code != 0 || r.stdout != "5\n" {
			t.Errorf("%s: CALC_TOKEN: %+v", tr, r)
		}
		if r := calc(append(base, "--token", "calc-test-token", "list"), "", noEnv); r.code != 0 || !strings.Contains(r.stdout, "calculator.v1.CalculatorService") {
			t.Errorf("%s: --token with list: %+v", tr, r)
		}
	}
}
