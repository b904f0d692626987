// Command calc is the calculator's command-line client.
//
//	calc 2 + 3                 prints 5
//	calc '2 * (3 + 4)'         prints 14 (quote * and parentheses from the shell)
//	calc 7 / 2                 prints 3.5
//	calc 2 + 3 --json          flags may come before, among or after the expression
//	calc                       reads one expression per line (a REPL on a terminal)
//	calc list [SERVICE]        lists the services, or SERVICE's methods
//	calc describe SYMBOL       prints a service, method, message or enum with its comments
//	calc call METHOD [JSON|-]  calls any method with a request in JSON
//	calc health [SERVICE]      checks grpc.health.v1, exiting as grpc_health_probe does
//	calc bench [flags]         runs the load tool calc-bench (calc bench -h)
//
// Flags:
//
//	--addr ADDR          server address: HOST:PORT, a list HOST:PORT,HOST:PORT or dns:///HOST:PORT, calls
//	                     spread round robin (default 127.0.0.1:4000 for tcp, 127.0.0.1:50051 for grpc; env CALC_ADDR)
//	--transport T        tcp (calc's raw TCP protocol, the default) or grpc (env CALC_TRANSPORT)
//	--compression C      grpc only: none, gzip or snappy (default none)
//	--tls                TLS 1.3 on either transport, trusting the system's roots (implied by the --tls-* flags)
//	--tls-ca FILE        trust the CA certificates in FILE (PEM) instead
//	--tls-cert, --tls-key FILE  client certificate and key, for a server requiring mutual TLS
//	--tls-server-name N  verify the server's certificate for N (default: the host of --addr)
//	--timeout D          per-call deadline (default 5s); a subcommand's whole deadline (calc health: 1s)
//	--json               print one JSON object per result or error
//
// # Subcommands
//
// list, describe, call and health work like grpcurl's commands of the same
// names, over either transport, with no .proto files: calc learns the
// schema from the server's reflection service (grpc.reflection.v1), doc
// comments included, and writes requests and responses as protojson. The
// flags apply to them too, anywhere on the line; --timeout bounds the
// whole subcommand, connecting and reflection included. No expression is
// a subcommand's name, so calc 2 + 3 and calc list cannot be confused.
//
// calc list prints the services, sorted, one a line, or with a service's
// full name its methods as SERVICE.Method; with --json, one JSON array.
//
// calc describe prints a service, method, message, field, oneof, enum or
// enum value, named in full (calculator.v1.Operator), as proto source
// after a line saying what it is, each element after its doc comment:
//
//	calculator.v1.CalculatorService.Calculate is a method:
//	// Calculate applies one operator to two int64 operands with checked
//	// arithmetic: a result that does not fit in an int64 is OUT_OF_RANGE.
//	rpc Calculate ( .calculator.v1.CalculateRequest ) returns ( .calculator.v1.CalculateResponse );
//
// Options and reserved ranges are left out; --json changes only how an
// error prints.
//
// calc call calls METHOD, written calculator.v1.CalculatorService/Calculate
// or calculator.v1.CalculatorService.Calculate, with requests in JSON
// (protojson: enums by name, int64 as numbers or strings) from the argument
// or, without one or for -, from stdin. A unary or server-streaming method
// takes exactly one request; a client-streaming or bidi method takes any
// number of JSON values, one a line or simply concatenated, sent as they
// are read while the responses print as they arrive:
//
//	calc call calculator.v1.CalculatorService/Calculate '{"operator": "OPERATOR_ADD", "lhs": 2, "rhs": 3}'
//	calc call calculator.v1.CalculatorService/CalculateStream < requests.jsonl
//
// Each response prints as protojson with the schema's field names, indented
// over several lines as grpcurl prints it, or with --json compact on one
// line (one response a line, for jq and scripts). A failed call prints
// "calc: CODE: message" and then each status detail as a line of JSON on
// stderr (with --json, one JSON object on stdout) and exits 1; a request
// that is not JSON of the method's input type is a usage error, exit 2.
//
// calc health calls grpc.health.v1.Health/Check for SERVICE, or for the
// whole server without one, prints the status (SERVING, NOT_SERVING, ...;
// with --json, {"status":"SERVING"}) and exits with grpc_health_probe's
// statuses, not calc's, so that it can take grpc_health_probe's place as
// a container's probe, over either transport:
//
//	0  SERVING
//	1  a usage error: an unknown flag, a bad value, too many arguments
//	2  the server could not be reached: refused, not answering within
//	   --timeout, or the other transport's port
//	3  the check failed: an unknown SERVICE (NOT_FOUND), a server without
//	   the health service (UNIMPLEMENTED), or no answer within --timeout
//	4  the check answered, but not SERVING
//
// Its --timeout defaults to 1s, like grpc_health_probe's --rpc-timeout and
// Kubernetes' probe timeoutSeconds, and bounds connecting and the check
// together.
//
// An argument that starts with minus signs and then a digit, a point, a
// parenthesis, a plus sign or a space (-2, -.5, -(1 + 2), '- 2'), or a
// lone minus, is part of the expression, so calc 3 - -2 and calc -2 + 1
// work; any other argument that starts with a minus sign is a flag. After
// -- every argument is part of the expression.
//
// Exit status:
//
//	0  every expression was evaluated
//	1  a call failed: calc printed "calc: CODE: message" on stderr, CODE
//	   being the gRPC status code (with --json, a JSON object on stdout);
//	   with several expressions calc goes on and exits 1 at the end.
//	   Reading stdin failing exits 1 too.
//	2  a usage error: an unknown flag or a bad value, or an expression the
//	   shell expanded into file names (calc 2 * 3 unquoted: see below), or
//	   a subcommand's missing or extra argument or bad request JSON;
//	   calc bench exits 2 when calc-bench cannot be found or started, and
//	   otherwise with calc-bench's status.
//
// calc --help and calc --version exit 0. calc health has exit statuses of
// its own (see Subcommands).
//
// An unquoted * is expanded by the shell into the names of the files in
// the current directory, so calc 2 * 3 may run as calc 2 go.mod main.go 3.
// When the server refuses such an expression, calc says so and exits 2:
//
//	calc: the shell expanded * into file names (go.mod main.go); quote the expression: calc '2 * 3'
//
// Over raw TCP calc reconnects by itself: a REPL outlives a restart of
// its server, each expression waiting within --timeout for the new
// connection, and with several servers it goes on with the others.
//
// Pointed at the other transport's port, calc (its subcommands too) fails
// at once and says which --transport to use:
//
//	calc: UNAVAILABLE: tcpconn: 127.0.0.1:50051 speaks HTTP/2, not calc's raw TCP protocol: this looks like a gRPC port: use --transport grpc
//	calc: UNAVAILABLE: 127.0.0.1:4000 completed calc's raw TCP handshake, not gRPC's: this looks like calc's raw TCP port: use --transport tcp
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/dial"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/version"
	"github.com/calcrpc/calc/internal/wire"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// cliConfig is calc's command line, but for the expression.
type cliConfig struct {
	conn    dial.Config
	timeout time.Duration
	json    bool
	version bool
}

// calc's exit statuses (see the package doc).
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// negativeStart matches an argument that begins an expression with a minus
// sign, which would otherwise be taken for a flag: -2, -.5, -(1), --2, -+2,
// or a quoted "- 2".
var negativeStart = regexp.MustCompile(`^-+[+0-9.(\s]`)

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && args[0] == "bench" {
		return runBench(args[1:], stderr)
	}
	var cfg cliConfig
	fs := flag.NewFlagSet("calc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs, stderr) }
	cfg.conn.AddFlags(fs, getenv)
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "per-call deadline")
	fs.BoolVar(&cfg.json, "json", false, "print JSON")
	fs.BoolVar(&cfg.version, "version", false, "print calc's version and exit")
	flags, words, err := splitArgs(fs, args)
	sub := findSubcommand(words)
	usageExit := exitUsage
	if sub != nil {
		usageExit = sub.usageExit
	}
	if err != nil {
		fmt.Fprintf(stderr, "calc: %v; calc --help lists the flags\n", err)
		return usageExit
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return usageExit
	}
	if cfg.version {
		fmt.Fprintln(stdout, version.String("calc"))
		return exitOK
	}
	if err := cfg.conn.Check(); err != nil {
		fmt.Fprintln(stderr, "calc:", err)
		return usageExit
	}
	flush, err := cfg.conn.TraceFromEnv(ctx, "calc", slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		fmt.Fprintln(stderr, "calc: tracing:", err)
		return usageExit
	}
	defer flush()
	if sub != nil {
		if sub.timeout != 0 && !isSet(fs, "timeout") {
			cfg.timeout = sub.timeout
		}
		return runSubcommand(ctx, sub, words[1:], cfg, stdin, stdout, stderr)
	}
	hint := &transportHint{cfg: cfg.conn}
	report := func(expression string, err error) {
		printErr(stderr, stdout, cfg.json, map[string]any{"expression": expression}, hint.explain(ctx, err))
	}
	client, closeFn, err := connect(ctx, cfg)
	if err != nil {
		report("", err)
		return exitFailed
	}
	defer closeFn()
	if len(words) > 0 {
		expression := strings.Join(words, " ")
		err := evaluate(ctx, client, cfg, expression, stdout)
		if err == nil {
			return exitOK
		}
		if msg := globMessage(words, err); msg != "" {
			fmt.Fprintln(stderr, "calc:", msg)
			return exitUsage
		}
		report(expression, err)
		return exitFailed
	}
	return repl(ctx, client, cfg, stdin, stdout, stderr, report)
}

// splitArgs separates calc's flags, with their values, from the words of
// the expression or subcommand, so that flags may come before, among or
// after them. An argument that starts with a minus sign is a flag unless
// it is a lone minus or matches negativeStart; after "--" every argument
// is a word. A flag fs defines that takes a value and is not written
// -name=value takes the next argument as its value. splitArgs rejects a
// flag fs does not define, except -h and -help, which fs.Parse answers
// with the usage; it still returns every word, so that the caller knows
// which subcommand's usage error it is.
func splitArgs(fs *flag.FlagSet, args []string) (flags, words []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return flags, append(words, args[i+1:]...), err
		case a == "-" || !strings.HasPrefix(a, "-") || negativeStart.MatchString(a):
			words = append(words, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		switch {
		case f == nil && name != "h" && name != "help" && err == nil:
			err = fmt.Errorf("unknown flag %s", a)
			if len(words) > 0 && findSubcommand(words) == nil {
				err = fmt.Errorf("unknown flag %s after the expression", a)
			}
		case f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args):
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, words, err
}

// isSet reports whether the command line set the flag named name.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// printUsage prints calc --help.
func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintln(w, "usage: calc [flags] [expression] [flags]    (no expression: read expressions from stdin)")
	for _, sc := range subcommands {
		fmt.Fprintf(w, "       calc [flags] %-26s %s\n", sc.name+" "+sc.args, sc.summary)
	}
	fmt.Fprintln(w, "       calc bench [flags]                      the load tool calc-bench (calc bench -h)")
	fmt.Fprintln(w, "Quote an expression that holds * or parentheses, as in calc '2 * (3 + 4)': the shell expands an unquoted * into file names.")
	fmt.Fprintln(w, "Subcommands learn the schema by server reflection over either transport; --timeout bounds the whole subcommand (calc health: default 1s).")
	fmt.Fprintln(w, "Exit status: 0 ok, 1 a call failed, 2 usage; calc health: 0 SERVING, 1 usage, 2 no connection, 3 the check failed, 4 not SERVING.")
	fs.PrintDefaults()
}

// isBoolFlag reports whether f takes no value, as -json does.
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// repl evaluates one expression per line of stdin, prompting on a terminal,
// and reports each error with report.
func repl(ctx context.Context, client calculatorv1.CalculatorServiceClient, cfg cliConfig, stdin io.Reader, stdout, stderr io.Writer, report func(expression string, err error)) int {
	interactive := false
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			interactive = true
		}
	}
	code := exitOK
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for {
		if interactive {
			fmt.Fprint(stdout, "> ")
		}
		if !sc.Scan() {
			break
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if interactive && (line == "exit" || line == "quit") {
			break
		}
		if err := evaluate(ctx, client, cfg, line, stdout); err != nil {
			report(line, err)
			code = exitFailed
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "calc: reading input:", err)
		return exitFailed
	}
	return code
}

// evaluate evaluates one expression and prints its result, or returns the
// call's error.
func evaluate(ctx context.Context, client calculatorv1.CalculatorServiceClient, cfg cliConfig, expression string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	resp, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: expression})
	if err != nil {
		return err
	}
	if cfg.json {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"expression": expression, "result": resp.GetResult(), "exact": resp.GetExact()})
		return nil
	}
	fmt.Fprintln(stdout, resp.GetResult())
	return nil
}

// connect connects to the server over the configured transport and returns a
// client with a function that closes the connection.
func connect(ctx context.Context, cfg cliConfig) (calculatorv1.CalculatorServiceClient, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	conn, closeFn, err := dial.Open(ctx, cfg.conn, nil)
	if err != nil {
		return nil, nil, err
	}
	return calculatorv1.NewCalculatorServiceClient(conn), closeFn, nil
}

// printErr prints a call's error: "CODE: message" on stderr, or with
// --json a JSON object on stdout, with fields besides the code and message.
func printErr(stderr, stdout io.Writer, asJSON bool, fields map[string]any, err error) {
	st := status.Convert(err)
	if asJSON {
		out := map[string]any{"code": wire.CodeName(st.Code()), "message": st.Message()}
		for k, v := range fields {
			out[k] = v
		}
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
				out["field"] = br.GetFieldViolations()[0].GetField()
			}
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				out["reason"] = info.GetReason()
				if off, ok := info.GetMetadata()["offset"]; ok {
					out["offset"] = off
				}
			}
		}
		_ = json.NewEncoder(stdout).Encode(out)
		return
	}
	fmt.Fprintf(stderr, "calc: %s: %s\n", wire.CodeName(st.Code()), st.Message())
}
