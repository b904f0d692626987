package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/calcrpc/calc/client/dial"
)

// subcommand is one of calc's grpcurl-style subcommands, calc NAME ARGS,
// which work over either transport through server reflection.
type subcommand struct {
	name    string
	args    string // the arguments, for the usage
	summary string
	// minArgs and maxArgs bound the number of arguments.
	minArgs, maxArgs int
	// usageExit is the exit status of a usage error, connExit that of
	// failing to connect.
	usageExit, connExit int
	// timeout, if not zero, replaces --timeout's default.
	timeout time.Duration
	run     func(ctx context.Context, s *session, args []string) int
}

// subcommands are calc's subcommands. No expression is one of their
// names, so calc list and calc 2 + 3 cannot be confused.
var subcommands = []*subcommand{
	{name: "list", args: "[SERVICE]", summary: "the services, or SERVICE's methods", maxArgs: 1,
		usageExit: exitUsage, connExit: exitFailed, run: runList},
	{name: "describe", args: "SYMBOL", summary: "a service, method, message or enum as proto source, with its comments", minArgs: 1, maxArgs: 1,
		usageExit: exitUsage, connExit: exitFailed, run: runDescribe},
	{name: "call", args: "METHOD [JSON|-]", summary: "call METHOD with a request in JSON (none or -: from stdin)", minArgs: 1, maxArgs: 2,
		usageExit: exitUsage, connExit: exitFailed, run: runCall},
	{name: "health", args: "[SERVICE]", summary: "check grpc.health.v1, exiting as grpc_health_probe does", maxArgs: 1,
		usageExit: healthUsage, connExit: healthConnFailed, timeout: time.Second, run: runHealth},
}

// findSubcommand returns the subcommand the first word of the command
// line names, or nil for an expression.
func findSubcommand(words []string) *subcommand {
	if len(words) == 0 {
		return nil
	}
	for _, sc := range subcommands {
		if sc.name == words[0] {
			return sc
		}
	}
	return nil
}

// session is what a subcommand works with: the command line's flags, the
// standard streams and a connection to the server.
type session struct {
	cfg            cliConfig
	stdin          io.Reader
	stdout, stderr io.Writer
	conn           grpc.ClientConnInterface
	hint           *transportHint
	// hintCtx bounds the probe of a transport hint: the command's context,
	// which outlives the subcommand's deadline.
	hintCtx context.Context
}

// runSubcommand runs sc with args, the words after its name, under one
// deadline, --timeout, for connecting and all of sc's calls.
func runSubcommand(ctx context.Context, sc *subcommand, args []string, cfg cliConfig, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < sc.minArgs || len(args) > sc.maxArgs {
		fmt.Fprintf(stderr, "calc: usage: calc %s %s; calc --help says more\n", sc.name, sc.args)
		return sc.usageExit
	}
	s := &session{cfg: cfg, stdin: stdin, stdout: stdout, stderr: stderr, hint: &transportHint{cfg: cfg.conn}, hintCtx: ctx}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	conn, closeFn, err := dial.Open(ctx, cfg.conn, nil)
	if err != nil {
		s.fail(err)
		return sc.connExit
	}
	defer closeFn()
	s.conn = conn
	return sc.run(ctx, s, args)
}

// fail reports a failed call as calc does for expressions, with the
// status details too, and returns exitFailed: "calc: CODE: message" and
// a line of JSON per detail on stderr, or with --json one JSON object on
// stdout. An error that says to use the other transport says so.
func (s *session) fail(err error) int {
	err = s.hint.explain(s.hintCtx, err)
	var details []any
	for _, d := range status.Convert(err).Proto().GetDetails() {
		b, jerr := protojson.MarshalOptions{UseProtoNames: true}.Marshal(d)
		if jerr != nil {
			details = append(details, d.GetTypeUrl())
			continue
		}
		details = append(details, compactJSON(b))
	}
	if s.cfg.json {
		fields := map[string]any{}
		if len(details) > 0 {
			fields["details"] = details
		}
		printErr(s.stderr, s.stdout, true, fields, err)
		return exitFailed
	}
	printErr(s.stderr, s.stdout, false, nil, err)
	for _, d := range details {
		fmt.Fprintf(s.stderr, "  %s\n", d)
	}
	return exitFailed
}

// requestFailed reports a request calc call could not send: input that is
// not a request's JSON is a usage error (exit 2), a read error exits 1,
// and a send that failed is a failed call.
func (s *session) requestFailed(err error) int {
	var bad *badRequestError
	if errors.As(err, &bad) {
		fmt.Fprintln(s.stderr, "calc:", bad.msg)
		return exitUsage
	}
	if _, ok := status.FromError(err); ok {
		return s.fail(err)
	}
	fmt.Fprintln(s.stderr, "calc:", err)
	return exitFailed
}
