// Command calc is the calculator's command-line client.
//
//	calc 2 + 3                 prints 5
//	calc '2 * (3 + 4)'         prints 14
//	calc 7 / 2                 prints 3.5
//	calc                       reads one expression per line (a REPL on a terminal)
//	calc bench [flags]         runs the load tool calc-bench (calc bench -h)
//
// Flags (before the expression):
//
//	--addr HOST:PORT     server address (default 127.0.0.1:4000 for tcp, 127.0.0.1:50051 for grpc; env CALC_ADDR)
//	--transport T        tcp (calc's raw TCP protocol, the default) or grpc (env CALC_TRANSPORT)
//	--compression C      grpc only: none, gzip or snappy (default none)
//	--timeout D          per-call deadline (default 5s)
//	--json               print one JSON object per result or error
//
// On an error calc prints the gRPC status code and message on stderr and
// exits 1; with several expressions it goes on and exits 1 at the end.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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

// negativeStart matches an argument that begins an expression with a minus
// sign, which the flag package would take for a flag.
var negativeStart = regexp.MustCompile(`^-[0-9.(]`)

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && args[0] == "bench" {
		return runBench(args[1:], stderr)
	}
	for i, a := range args {
		if negativeStart.MatchString(a) {
			args = append(append(args[:i:i], "--"), args[i:]...)
			break
		}
	}
	var cfg cliConfig
	fs := flag.NewFlagSet("calc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: calc [flags] [expression]    (no expression: read expressions from stdin)\n       calc bench [flags]")
		fs.PrintDefaults()
	}
	cfg.conn.AddFlags(fs, getenv)
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "per-call deadline")
	fs.BoolVar(&cfg.json, "json", false, "print JSON")
	fs.BoolVar(&cfg.version, "version", false, "print calc's version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.version {
		fmt.Fprintln(stdout, version.String("calc"))
		return 0
	}
	if err := cfg.conn.Check(); err != nil {
		fmt.Fprintln(stderr, "calc:", err)
		return 2
	}
	client, closeFn, err := connect(ctx, cfg)
	if err != nil {
		printErr(stderr, stdout, cfg.json, "", err)
		return 1
	}
	defer closeFn()
	if fs.NArg() > 0 {
		if !evaluate(ctx, client, cfg, strings.Join(fs.Args(), " "), stdout, stderr) {
			return 1
		}
		return 0
	}
	return repl(ctx, client, cfg, stdin, stdout, stderr)
}

// repl evaluates one expression per line of stdin, prompting on a terminal.
func repl(ctx context.Context, client calculatorv1.CalculatorServiceClient, cfg cliConfig, stdin io.Reader, stdout, stderr io.Writer) int {
	interactive := false
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			interactive = true
		}
	}
	code := 0
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
		if !evaluate(ctx, client, cfg, line, stdout, stderr) {
			code = 1
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "calc: reading input:", err)
		return 1
	}
	return code
}

// evaluate evaluates one expression and prints its result or error.
func evaluate(ctx context.Context, client calculatorv1.CalculatorServiceClient, cfg cliConfig, expression string, stdout, stderr io.Writer) bool {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	resp, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: expression})
	if err != nil {
		printErr(stderr, stdout, cfg.json, expression, err)
		return false
	}
	if cfg.json {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"expression": expression, "result": resp.GetResult(), "exact": resp.GetExact()})
		return true
	}
	fmt.Fprintln(stdout, resp.GetResult())
	return true
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

// printErr prints a call's error: "CODE: message" on stderr, or a JSON
// object on stdout with --json.
func printErr(stderr, stdout io.Writer, asJSON bool, expression string, err error) {
	st := status.Convert(err)
	if asJSON {
		out := map[string]any{"expression": expression, "code": wire.CodeName(st.Code()), "message": st.Message()}
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
