// Command calc-peer serves calc's CalculatorService over the RPC systems
// calc's benchmarks compare it with, and load-tests them with calc-bench's
// engine (package bench), so that every column of scripts/bench.sh's tables
// is measured alike:
//
//	calc-peer serve --peer drpc|connect [--addr 127.0.0.1:0]
//	calc-peer bench --peer drpc|connect --addr HOST:PORT [--rpc calculate|stream] [calc-bench's load flags] [--json]
//
// drpc is storj.io/drpc over plain TCP (bench/peers/drpcpeer); connect is
// connectrpc.com/connect's Connect protocol over HTTP/2 without TLS
// (bench/peers/connectpeer). Both serve server/calculator's Service, the
// one calcd serves, through handlers written by hand over the generated
// messages. serve logs {"msg":"listening","transport":PEER,"addr":…} on
// stderr and runs until SIGINT or SIGTERM.
//
// bench makes Calculate(ADD, i, 1) calls (i cycling through 0 … 99) or,
// with --rpc stream, keeps --pipeline calculations in flight on one
// CalculateStream per connection, checks every result, and prints the
// report calc-bench prints. A drpc connection carries one call at a time,
// so drpc's unary callers on one connection take turns; its streams are
// written with manual flushes, a window's worth of requests per write.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/bench"
	"github.com/calcrpc/calc/bench/peers/connectpeer"
	"github.com/calcrpc/calc/bench/peers/drpcpeer"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calculator"
)

// operands is the cycle of the calls' left operands, as calc-bench's.
const operands = 100

// dialTimeout bounds opening the connections and their first call.
const dialTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = "usage: calc-peer serve --peer drpc|connect [--addr HOST:PORT] | calc-peer bench --peer drpc|connect --addr HOST:PORT [flags]"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return serve(ctx, args[1:], stderr)
		case "bench":
			return runBench(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, usage)
	return 2
}

// checkPeer validates --peer.
func checkPeer(p string) error {
	if p != "drpc" && p != "connect" {
		return fmt.Errorf("unknown --peer %q (want drpc or connect)", p)
	}
	return nil
}

// serve runs a peer server until ctx is done.
func serve(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("calc-peer serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	peer := fs.String("peer", "", "drpc or connect")
	addr := fs.String("addr", "127.0.0.1:0", "listen `address` (port 0 picks a free port)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := checkPeer(*peer); err != nil {
		fmt.Fprintln(stderr, "calc-peer:", err)
		return 2
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, "calc-peer:", err)
		return 1
	}
	slog.New(slog.NewJSONHandler(stderr, nil)).Info("listening", "transport", *peer, "addr", lis.Addr().String())
	svc := calculator.New()
	switch *peer {
	case "drpc":
		err = drpcpeer.Serve(ctx, lis, svc)
	default:
		srv := connectpeer.NewServer(svc)
		stop := context.AfterFunc(ctx, func() { srv.Close() })
		defer stop()
		if err = srv.Serve(lis); errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "calc-peer:", err)
		return 1
	}
	return 0
}

// runBench is calc-peer bench.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o bench.Options
	fs := flag.NewFlagSet("calc-peer bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	peer := fs.String("peer", "", "drpc or connect")
	addr := fs.String("addr", "", "server `address`")
	rpc := fs.String("rpc", "calculate", "calculate or stream")
	asJSON := fs.Bool("json", false, "print JSON")
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	err := checkPeer(*peer)
	switch {
	case err != nil:
	case *rpc != "calculate" && *rpc != "stream":
		err = fmt.Errorf("unknown --rpc %q (want calculate or stream)", *rpc)
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case *addr == "":
		err = errors.New("--addr is required")
	}
	if err == nil {
		err = o.Check(fs, *rpc == "stream")
	}
	if err == nil {
		err = o.CheckLoopback(ctx, *addr, o.ServerPprof)
	}
	if err != nil {
		fmt.Fprintln(stderr, "calc-peer:", err)
		return 2
	}
	bc := new(bench.ByteCounter)
	conns, closeAll, err := dial(ctx, *peer, *addr, o.Conns, *rpc == "stream", bc)
	if err != nil {
		fmt.Fprintln(stderr, "calc-peer:", err)
		return 1
	}
	defer closeAll()
	cfg := o.Config(bc, stderr)
	var res *bench.Result
	if *rpc == "stream" {
		res, err = bench.RunPipelined(ctx, cfg, o.Concurrency, o.Pipeline, func(ctx context.Context, i int) (bench.Pipe, error) {
			s, err := conns[i%len(conns)].stream(ctx)
			if err != nil {
				return nil, err
			}
			return newPipe(s), nil
		})
		if err != nil {
			fmt.Fprintln(stderr, "calc-peer: opening streams:", err)
			return 1
		}
	} else {
		res = bench.RunUnary(ctx, cfg, o.Concurrency, func(w int) bench.CallFunc {
			return calculateCall(conns[w%len(conns)])
		})
	}
	if res.SnapshotErr != nil {
		fmt.Fprintln(stderr, "calc-peer: reading counters:", res.SnapshotErr)
	}
	rep := o.Report(*peer, *rpc, *addr)
	rep.Fill(res, o.ServerPID != 0 && res.SnapshotErr == nil, o.ServerPprof != "" && res.SnapshotErr == nil)
	if err := o.Emit(stdout, rep, *asJSON); err != nil {
		fmt.Fprintln(stderr, "calc-peer:", err)
		return 1
	}
	if len(rep.Errors) > 0 || rep.Calls == 0 {
		return 1
	}
	return 0
}

// peerConn is one connection of a peer, as the load needs it.
type peerConn struct {
	calculate func(ctx context.Context, req *calculatorv1.CalculateRequest, resp *calculatorv1.CalculateResponse) error
	stream    func(ctx context.Context) (stream, error)
}

// stream is a CalculateStream call of a peer.
type stream interface {
	Send(*calculatorv1.CalculateStreamRequest) error
	Flush() error
	Recv(*calculatorv1.CalculateStreamResponse) error
	CloseSend() error
}

// dial opens n connections to the peer at addr, counting their bytes in
// bc, and makes a Calculate call on each before the clock starts.
func dial(ctx context.Context, peer, addr string, n int, streaming bool, bc *bench.ByteCounter) ([]*peerConn, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var conns []*peerConn
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for range n {
		var pc *peerConn
		switch peer {
		case "drpc":
			var d net.Dialer
			nc, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			c := drpcpeer.NewConn(bc.Wrap(nc), streaming)
			closers = append(closers, func() { _ = c.Close() })
			pc = &peerConn{
				calculate: c.Calculate,
				stream: func(ctx context.Context) (stream, error) {
					return c.CalculateStream(ctx)
				},
			}
		default:
			c := connectpeer.NewClient(addr, bc.Wrap)
			closers = append(closers, c.Close)
			pc = &peerConn{
				calculate: func(ctx context.Context, req *calculatorv1.CalculateRequest, resp *calculatorv1.CalculateResponse) error {
					r, err := c.Calculate(ctx, req)
					if err == nil {
						resp.Result = r.GetResult()
					}
					return err
				},
				stream: func(ctx context.Context) (stream, error) {
					s, err := c.CalculateStream(ctx)
					if err != nil {
						return nil, err
					}
					return flushless{s}, nil
				},
			}
		}
		if err := calculateCall(pc)(ctx); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("first call: %w", err)
		}
		conns = append(conns, pc)
	}
	return conns, closeAll, nil
}

// flushless is a connect stream, which writes what Send gives it.
type flushless struct{ *connectpeer.Stream }

func (flushless) Flush() error { return nil }

// calculateCall returns a CallFunc making Calculate(ADD, i, 1) calls on
// pc and checking their results; a wrong one counts as DATA_LOSS.
func calculateCall(pc *peerConn) bench.CallFunc {
	req := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Rhs: 1}
	resp := new(calculatorv1.CalculateResponse)
	var i int64
	return func(ctx context.Context) error {
		i = (i + 1) % operands
		req.Lhs = i
		if err := pc.calculate(ctx, req, resp); err != nil {
			return err
		}
		if resp.GetResult() != i+1 {
			return status.Errorf(codes.DataLoss, "Calculate(ADD, %d, 1) = %d", i, resp.GetResult())
		}
		return nil
	}
}

// pipe is a bench.Pipe over a peer's CalculateStream: call id is the
// stream message id and computes id%100 + 1.
type pipe struct {
	s    stream
	req  *calculatorv1.CalculateStreamRequest
	resp *calculatorv1.CalculateStreamResponse
}

func newPipe(s stream) *pipe {
	return &pipe{
		s:    s,
		req:  &calculatorv1.CalculateStreamRequest{Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Rhs: 1}},
		resp: new(calculatorv1.CalculateStreamResponse),
	}
}

func (p *pipe) Send(id uint64) error {
	p.req.Id = id
	p.req.Calculation.Lhs = int64(id % operands)
	return p.s.Send(p.req)
}

func (p *pipe) Flush() error { return p.s.Flush() }

func (p *pipe) Recv() (uint64, codes.Code, error) {
	if err := p.s.Recv(p.resp); err != nil {
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

func (p *pipe) CloseSend() error { return p.s.CloseSend() }
