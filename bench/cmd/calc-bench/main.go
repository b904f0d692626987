// Command calc-bench is calc's load tool. It load-tests a calc server
// over raw TCP or gRPC and reports calls/s, latency percentiles, errors by
// code, calls sent and retried, bytes on the wire per call and CPU per
// call (BENCHMARKS.md says how it measures), with --timeline FILE the
// calls that succeeded and failed in every 100 ms, or, with --idle N, the
// server's memory per idle raw TCP connection, or, with --burst
// frames|streams, whether the server's memory comes back after a hostile
// burst.
//
//	calc-bench --transport tcp --conns 1 --concurrency 64 --duration 10s
//	calc-bench --transport grpc --rpc stream --conns 4 --pipeline 128 --json
//	calc-bench --idle 10000 --server-pid $(pidof calcd)
//	calc-bench --burst frames --server-pid $(pidof calcd) --burst-wait 60s
//	calc-bench --burst streams --burst-conns 20 --burst-streams 1024 --server-pid $(pidof calcd)
//	calc-bench --transport tcp --concurrency 64 --metrics-addr 127.0.0.1:9465
//	calc-bench --version       prints its version and commit
//
// --metrics-addr serves the client's per-RPC metrics during the run, the
// grpc_client_* series of go-grpc-middleware labelled with the transport,
// at /metrics. With the standard OTEL_* variables set (an OTLP endpoint,
// OTEL_TRACES_SAMPLER, ...) every call is traced, as calcd traces it, and
// carries its traceparent to the server.
//
// calc bench ARGS runs calc-bench ARGS (calc finds it next to itself or
// in PATH). Build it with:
//
//	go build -o bin/calc-bench ./bench/cmd/calc-bench
//
// calc-bench exits 0 after a run without errors, 1 if a call failed, no
// call completed or the server could not be reached, and 2 for a usage
// error.
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
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/bench"
	"github.com/calcrpc/calc/client/dial"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calccodec"
	"github.com/calcrpc/calc/internal/version"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// benchUsage heads calc-bench -h.
const benchUsage = `usage: calc-bench [flags]    (or: calc bench [flags])

Load-tests a calc server and reports calls/s, latency percentiles (p50, p90,
p99, p99.9, max), errors by code, calls sent and retried, bytes on the wire
per call and client CPU per call. Closed loop by default (each caller sends
its next call when the last returns); --rate makes it open loop. --timeline
FILE records the calls that succeeded and failed in every 100 ms, to see a
server restart from the client's side (scripts/scaleout.sh). --idle N
measures instead the server's memory per idle raw TCP connection: its
VmRSS 1 s after the connections opened ("right after") and, with
--idle-settle 260s, once a garbage collection the runtime forces (2
minutes after the last, in an idle Go server) has given back the garbage
of the opening ("settled"), if every connection is still open then.

--burst makes a hostile burst over raw TCP and follows the server's RSS:
before, at the peak, as the connections close and every 5 s for
--burst-wait. "frames": --burst-conns connections (default 100) each send
--burst-trickle bytes (default 1 MiB) of a frame claiming a 4 MiB message,
over 2 s, and hold it unfinished; "streams": --burst-conns connections
(default 20) each open --burst-streams CalculateStream streams (default
1024) and send nothing. The connections stay open 3 s, then close. It
counts what the server answered: GOAWAY and STATUS frames by code and the
connections it closed.

  calc-bench --transport tcp --conns 1 --concurrency 64 --duration 10s
  calc-bench --transport grpc --rpc stream --conns 4 --pipeline 128 --json
  calc-bench --idle 10000 --server-pid $(pidof calcd) --idle-settle 260s
  calc-bench --burst frames --server-pid $(pidof calcd) --burst-wait 60s
  calc-bench --burst streams --burst-conns 20 --burst-streams 1024 --server-pid $(pidof calcd)
  calc-bench --concurrency 64 --metrics-addr 127.0.0.1:9465   (grpc_client_* at /metrics during the run)

With the standard OTEL_* variables set (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_TRACES_SAMPLER, ...), every call is traced and carries its W3C
traceparent to the server.

`

// operands is the cycle of the calls' left operands (0 … 99): one-byte
// varints, so a Calculate round trip has the size PROTOCOL.md gives.
const operands = 100

// benchDialTimeout bounds opening the connections and their first call.
const benchDialTimeout = 10 * time.Second

// idleHold is how long --idle keeps its connections open before reading
// the server's RSS.
const idleHold = time.Second

// Burst mode's fixed times: a frames burst sends its bytes over
// burstTrickleTime, and either burst holds its connections open for
// burstHold (both well within the server's 10 s frame timeout) before it
// closes them; the server's RSS is read every burstSampleEvery after.
const (
	burstTrickleTime = 2 * time.Second
	burstHold        = 3 * time.Second
	burstSampleEvery = 5 * time.Second
)

// Burst mode's defaults: the sizes the hardening issue measured.
const (
	burstFramesConns  = 100
	burstStreamsConns = 20
)

// errReported marks an error the flag package has already printed.
var errReported = errors.New("reported")

// benchFlags is calc-bench's command line.
type benchFlags struct {
	conn     dial.Config
	timeout  time.Duration
	json     bool
	timeline string
	load     bench.Options
	rpc      string
	idle     int
	settle   time.Duration // --idle-settle
	burst    bench.BurstConfig
	metrics  string // --metrics-addr
	version  bool
}

// parseFlags parses and validates calc-bench's arguments.
func parseFlags(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) (*benchFlags, error) {
	var f benchFlags
	fs := flag.NewFlagSet("calc-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	f.conn.AddFlags(fs, getenv)
	// Benchmark calls carry no deadline unless asked to, as in the wire
	// sizes PROTOCOL.md gives.
	fs.DurationVar(&f.timeout, "timeout", 0, "per-call deadline (0: calls carry none)")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.StringVar(&f.timeline, "timeline", "", "write to `FILE` a line every 100 ms of the measured window: the Unix time in ms and the calls that succeeded and failed in those 100 ms")
	f.load.AddFlags(fs)
	fs.StringVar(&f.rpc, "rpc", "calculate", "calculate (Calculate(ADD, i, 1)), evaluate (Evaluate(\"i + 1\")) or stream (CalculateStream)")
	fs.IntVar(&f.idle, "idle", 0, "idle mode: open `N` raw TCP connections, one call each, and report the server's RSS per connection (needs --server-pid)")
	fs.DurationVar(&f.settle, "idle-settle", 0, "with --idle: hold the connections this much longer, reading the server's RSS every 5s, and report it settled too (an idle Go server returns freed memory only after the garbage collections the runtime forces 2 minutes after the last: 260s sees at least one; a connection closed meanwhile voids the settled figure)")
	fs.StringVar(&f.burst.Kind, "burst", "", "burst mode: `frames` (connections trickling unfinished 4 MiB frames) or streams (connections opening many streams); reports the server's RSS before, at the peak and after (needs --server-pid)")
	fs.IntVar(&f.burst.Conns, "burst-conns", 0, "connections of a burst (default 100 for frames, 20 for streams)")
	fs.IntVar(&f.burst.Streams, "burst-streams", 1024, "streams each connection of a streams burst opens")
	fs.IntVar(&f.burst.Trickle, "burst-trickle", 1<<20, "`bytes` of its frame each connection of a frames burst sends, over 2s")
	fs.DurationVar(&f.burst.Wait, "burst-wait", time.Minute, "how long to follow the server's RSS after a burst's connections close")
	fs.StringVar(&f.metrics, "metrics-addr", "", "serve the client's per-RPC metrics (grpc_client_*, labelled with the transport) at http://`ADDRESS`/metrics during the run (port 0 picks one; calc-bench prints it)")
	fs.BoolVar(&f.version, "version", false, "print calc-bench's version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errReported, err)
	}
	if f.version {
		return &f, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := f.conn.Check(); err != nil {
		return nil, err
	}
	if f.rpc != "calculate" && f.rpc != "evaluate" && f.rpc != "stream" {
		return nil, fmt.Errorf("unknown --rpc %q (want calculate, evaluate or stream)", f.rpc)
	}
	if f.timeout < 0 {
		return nil, errors.New("--timeout must not be negative")
	}
	if err := f.load.Check(fs, f.rpc == "stream"); err != nil {
		return nil, err
	}
	switch {
	case f.idle < 0:
		return nil, errors.New("--idle must not be negative")
	case f.idle > 0 && f.conn.Transport != "tcp":
		return nil, errors.New("--idle measures raw TCP connections: use --transport tcp")
	case f.idle > 0 && f.load.ServerPID == 0:
		return nil, errors.New("--idle needs --server-pid to read the server's RSS")
	case f.settle < 0:
		return nil, errors.New("--idle-settle must not be negative")
	case f.settle > 0 && f.idle == 0:
		return nil, errors.New("--idle-settle needs --idle")
	}
	if err := checkBurst(&f); err != nil {
		return nil, err
	}
	if f.metrics != "" && (f.idle > 0 || f.burst.Kind != "") {
		return nil, errors.New("--metrics-addr counts the calls of a load run, not --idle or --burst")
	}
	if err := f.load.CheckLoopback(ctx, f.conn.Addr, f.load.ServerPprof, f.metrics); err != nil {
		return nil, err
	}
	return &f, nil
}

// checkBurst validates the burst flags and fills in the rest of the
// burst's configuration.
func checkBurst(f *benchFlags) error {
	b := &f.burst
	switch {
	case b.Kind == "":
		return nil
	case b.Kind != bench.BurstFrames && b.Kind != bench.BurstStreams:
		return fmt.Errorf("unknown --burst %q (want frames or streams)", b.Kind)
	case f.idle > 0:
		return errors.New("give --idle or --burst, not both")
	case f.conn.Transport != "tcp":
		return errors.New("--burst is made over raw TCP: use --transport tcp")
	case f.load.ServerPID == 0:
		return errors.New("--burst needs --server-pid to read the server's RSS")
	case b.Conns < 0:
		return errors.New("--burst-conns must not be negative")
	case b.Streams < 1:
		return errors.New("--burst-streams must be at least 1")
	case b.Trickle < 1:
		return errors.New("--burst-trickle must be at least 1")
	case b.Wait < 0:
		return errors.New("--burst-wait must not be negative")
	}
	if b.Conns == 0 {
		b.Conns = burstFramesConns
		if b.Kind == bench.BurstStreams {
			b.Conns = burstStreamsConns
		}
	}
	b.Addr, b.ServerPID, b.Timeout = f.conn.Addr, f.load.ServerPID, benchDialTimeout
	b.TrickleTime, b.Hold, b.SampleEvery = burstTrickleTime, burstHold, burstSampleEvery
	return nil
}

// run is calc-bench with its arguments and environment.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	f, err := parseFlags(ctx, args, stderr, getenv)
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(stderr, "calc-bench:", err)
		}
		return 2
	}
	if f.version {
		fmt.Fprintln(stdout, version.String("calc-bench"))
		return 0
	}
	if f.idle > 0 {
		return benchIdle(ctx, f, stdout, stderr)
	}
	if f.burst.Kind != "" {
		return benchBurst(ctx, f, stdout, stderr)
	}
	flush, err := f.conn.TraceFromEnv(ctx, "calc-bench", slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		fmt.Fprintln(stderr, "calc-bench: tracing:", err)
		return 2
	}
	defer flush()
	if f.metrics != "" {
		stop, err := serveMetrics(&f.conn, f.metrics, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "calc-bench: --metrics-addr:", err)
			return 1
		}
		defer stop()
	}
	bc := new(bench.ByteCounter)
	var retries atomic.Uint64
	f.conn.OnRetry = func() { retries.Add(1) }
	// calc's raw TCP client encodes the calculator's messages with
	// calccodec, as calcd does (BENCHMARKS.md); gRPC uses grpc-go's codec.
	f.conn.Codec = calccodec.Codec{}
	conns, closeAll, err := dialCounted(ctx, f.conn, f.load.Conns, bc)
	if err != nil {
		fmt.Fprintln(stderr, "calc-bench:", err)
		return 1
	}
	defer closeAll()
	cfg := f.load.Config(bc, stderr)
	cfg.Snapshot = bench.WithRetries(cfg.Snapshot, &retries)
	var timeline *bufio.Writer
	if f.timeline != "" {
		file, err := os.Create(f.timeline)
		if err != nil {
			fmt.Fprintln(stderr, "calc-bench:", err)
			return 1
		}
		defer file.Close()
		timeline = bufio.NewWriter(file)
		cfg.Timeline = timeline
	}
	var res *bench.Result
	if f.rpc == "stream" {
		res, err = bench.RunPipelined(ctx, cfg, f.load.Concurrency, f.load.Pipeline, func(ctx context.Context, i int) (bench.Pipe, error) {
			return openStream(ctx, conns[i%len(conns)])
		})
		if err != nil {
			fmt.Fprintln(stderr, "calc-bench: opening streams:", err)
			return 1
		}
	} else {
		res = bench.RunUnary(ctx, cfg, f.load.Concurrency, func(w int) bench.CallFunc {
			cc := conns[w%len(conns)]
			if f.rpc == "evaluate" {
				return evaluateCall(cc, f.timeout)
			}
			return calculateCall(cc, f.timeout)
		})
	}
	if res.SnapshotErr != nil {
		fmt.Fprintln(stderr, "calc-bench: reading counters:", res.SnapshotErr)
	}
	if timeline != nil {
		if err := timeline.Flush(); err != nil {
			fmt.Fprintln(stderr, "calc-bench: --timeline:", err)
			return 1
		}
	}
	rep := f.load.Report(f.conn.Transport, f.rpc, f.conn.Addr)
	rep.Fill(res, f.load.ServerPID != 0 && res.SnapshotErr == nil, f.load.ServerPprof != "" && res.SnapshotErr == nil)
	if err := f.load.Emit(stdout, rep, f.json); err != nil {
		fmt.Fprintln(stderr, "calc-bench:", err)
		return 1
	}
	if len(rep.Errors) > 0 || rep.Calls == 0 {
		return 1
	}
	return 0
}

// serveMetrics counts cfg's calls in client metrics (dial.NewClientMetrics)
// and serves them, with the Go runtime's, at http://addr/metrics until
// stop is called. It prints the address on stderr.
func serveMetrics(cfg *dial.Config, addr string, stderr io.Writer) (stop func(), err error) {
	cfg.ClientMetrics = dial.NewClientMetrics(cfg.Transport)
	reg := prometheus.NewRegistry()
	reg.MustRegister(cfg.ClientMetrics, collectors.NewGoCollector())
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	fmt.Fprintf(stderr, "calc-bench: serving metrics at http://%s/metrics\n", l.Addr())
	return func() { srv.Close() }, nil
}

// benchIdle runs calc-bench --idle.
func benchIdle(ctx context.Context, f *benchFlags, stdout, stderr io.Writer) int {
	icfg := bench.IdleConfig{Addr: f.conn.Addr, Conns: f.idle, ServerPID: f.load.ServerPID, Hold: idleHold, Settle: f.settle, Timeout: benchDialTimeout}
	if f.load.Progress {
		icfg.Progress = stderr
	}
	rep, err := bench.RunIdle(ctx, icfg)
	if err != nil {
		fmt.Fprintln(stderr, "calc-bench:", err)
		return 1
	}
	return writeReport(f, stdout, rep, len(rep.Errors))
}

// benchBurst runs calc-bench --burst.
func benchBurst(ctx context.Context, f *benchFlags, stdout, stderr io.Writer) int {
	rep, err := bench.RunBurst(ctx, f.burst)
	if err != nil {
		fmt.Fprintln(stderr, "calc-bench:", err)
		return 1
	}
	return writeReport(f, stdout, rep, len(rep.Errors))
}

// writeReport prints an idle or burst report, as JSON with --json, and
// returns the exit status: 1 when the report holds errors or cannot be
// written.
func writeReport(f *benchFlags, stdout io.Writer, rep interface{ WriteText(io.Writer) error }, errs int) int {
	var err error
	if f.json {
		err = json.NewEncoder(stdout).Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil || errs > 0 {
		return 1
	}
	return 0
}

// dialCounted opens n connections over the configured transport, counting
// their bytes in bc, and makes one Calculate call on each so that
// connection setup is done before the clock starts. It returns them with a
// function that closes them all.
func dialCounted(ctx context.Context, cfg dial.Config, n int, bc *bench.ByteCounter) ([]grpc.ClientConnInterface, func(), error) {
	var conns []grpc.ClientConnInterface
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, benchDialTimeout)
	defer cancel()
	for range n {
		cc, closeFn, err := dial.Open(ctx, cfg, bc.Wrap)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("dial %s: %w", cfg.Addr, err)
		}
		closers = append(closers, closeFn)
		conns = append(conns, cc)
		if err := calculateCall(cc, 0)(ctx); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("first call: %w", err)
		}
	}
	return conns, closeAll, nil
}

// withTimeout returns ctx with a deadline timeout from now, or ctx itself
// if timeout is 0.
func withTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout == 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, timeout)
}

// calculateCall returns a CallFunc making Calculate(ADD, i, 1) calls on cc,
// i cycling through 0 … 99, and checking their results. A wrong result
// counts as DATA_LOSS.
func calculateCall(cc grpc.ClientConnInterface, timeout time.Duration) bench.CallFunc {
	req := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Rhs: 1}
	reply := new(calculatorv1.CalculateResponse)
	var i int64
	return func(ctx context.Context) error {
		i = (i + 1) % operands
		req.Lhs = i
		ctx, cancel := withTimeout(ctx, timeout)
		defer cancel()
		if err := cc.Invoke(ctx, calculatorv1.CalculatorService_Calculate_FullMethodName, req, reply); err != nil {
			return err
		}
		if reply.GetResult() != i+1 {
			return status.Errorf(codes.DataLoss, "Calculate(ADD, %d, 1) = %d", i, reply.GetResult())
		}
		return nil
	}
}

// evaluateCall returns a CallFunc making Evaluate("i + 1") calls on cc, i
// cycling through 0 … 99, and checking their results.
func evaluateCall(cc grpc.ClientConnInterface, timeout time.Duration) bench.CallFunc {
	reqs := make([]*calculatorv1.EvaluateRequest, operands)
	for i := range reqs {
		reqs[i] = &calculatorv1.EvaluateRequest{Expression: strconv.Itoa(i) + " + 1"}
	}
	reply := new(calculatorv1.EvaluateResponse)
	i := 0
	return func(ctx context.Context) error {
		i = (i + 1) % operands
		ctx, cancel := withTimeout(ctx, timeout)
		defer cancel()
		if err := cc.Invoke(ctx, calculatorv1.CalculatorService_Evaluate_FullMethodName, reqs[i], reply); err != nil {
			return err
		}
		if want := strconv.Itoa(i + 1); reply.GetResult() != want {
			return status.Errorf(codes.DataLoss, "Evaluate(%q) = %q, want %s", reqs[i].GetExpression(), reply.GetResult(), want)
		}
		return nil
	}
}

// streamPipe is a bench.Pipe over one CalculateStream: call id is the
// stream message id and computes id%100 + 1.
type streamPipe struct {
	s    grpc.BidiStreamingClient[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse]
	req  *calculatorv1.CalculateStreamRequest
	resp *calculatorv1.CalculateStreamResponse
}

// openStream opens a CalculateStream on cc.
func openStream(ctx context.Context, cc grpc.ClientConnInterface) (*streamPipe, error) {
	s, err := calculatorv1.NewCalculatorServiceClient(cc).CalculateStream(ctx)
	if err != nil {
		return nil, err
	}
	return &streamPipe{
		s:    s,
		req:  &calculatorv1.CalculateStreamRequest{Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Rhs: 1}},
		resp: new(calculatorv1.CalculateStreamResponse),
	}, nil
}

func (p *streamPipe) Send(id uint64) error {
	p.req.Id = id
	p.req.Calculation.Lhs = int64(id % operands)
	return p.s.Send(p.req)
}

// Flush does nothing: both transports write what Send gives them.
func (p *streamPipe) Flush() error { return nil }

func (p *streamPipe) Recv() (uint64, codes.Code, error) {
	if err := p.s.RecvMsg(p.resp); err != nil {
		return 0, codes.OK, err
	}
	id := p.resp.GetId()
	if e := p.resp.GetError(); e != nil {
		return id, codes.Code(e.GetCode()), nil
	}
	if p.resp.GetResult() != int64(id%operands)+1 {
		return id, codes.DataLoss, nil
	}
	return id, codes.OK, nil
}

func (p *streamPipe) CloseSend() error { return p.s.CloseSend() }
