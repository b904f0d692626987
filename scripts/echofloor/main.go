// Command echofloor is the floor calc's benchmarks are measured against: a
// bare framed echo server and its load client. A frame is a 4-byte
// big-endian length and that many bytes; the server echoes every frame
// back, from one goroutine per connection with a bufio reader and writer
// that it flushes when no more input is buffered. No protobuf, no call
// ids, no dispatch: what is left is the cost of moving bytes through the
// kernel and Go's netpoller, the least any RPC system over TCP can take.
//
//	echofloor serve [--addr 127.0.0.1:0]
//	echofloor bench --addr HOST:PORT [--conns N] [--concurrency C] [--pipeline W] [--duration D] [--json] …
//
// serve logs {"msg":"listening","transport":"floor","addr":…} on stderr.
// bench takes calc bench's load flags (echofloor bench -h) and prints the
// same report: without --pipeline, C callers share the connections, each
// waiting for its echo before sending again (answers come back in order,
// so a connection's callers queue first in, first out); with --pipeline W,
// each connection keeps W frames in flight, written in batches.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/bench"
)

// maxFrame is the largest frame the server echoes.
const maxFrame = 1 << 20

// idSize is the bytes of a frame's payload that carry the call's id.
const idSize = 8

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "serve":
			return serve(ctx, args[1:], stderr)
		case "bench":
			return runBench(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, "usage: echofloor serve [--addr HOST:PORT] | echofloor bench [flags]")
	return 2
}

// serve runs the echo server until ctx is done.
func serve(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("echofloor serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen `address` (port 0 picks a free port)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, "echofloor:", err)
		return 1
	}
	slog.New(slog.NewJSONHandler(stderr, nil)).Info("listening", "transport", "floor", "addr", lis.Addr().String())
	stop := context.AfterFunc(ctx, func() { lis.Close() })
	defer stop()
	for {
		nc, err := lis.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			fmt.Fprintln(stderr, "echofloor:", err)
			return 1
		}
		go echo(nc)
	}
}

// echo echoes nc's frames until it closes.
func echo(nc net.Conn) {
	defer nc.Close()
	r, w := bufio.NewReader(nc), bufio.NewWriter(nc)
	var hdr [4]byte
	var buf []byte
	for {
		if r.Buffered() == 0 && w.Flush() != nil { // the next read may block
			return
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			_ = w.Flush()
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			return
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		_, _ = w.Write(hdr[:])
		_, _ = w.Write(buf)
	}
}

// runBench is echofloor bench.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o bench.Options
	fs := flag.NewFlagSet("echofloor bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:4100", "echo server `address`")
	size := fs.Int("size", idSize, "payload bytes per frame (at least 8: the call id)")
	asJSON := fs.Bool("json", false, "print JSON")
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	pipelined := false
	fs.Visit(func(f *flag.Flag) { pipelined = pipelined || f.Name == "pipeline" })
	err := o.Check(fs, pipelined)
	switch {
	case err != nil:
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case *size < idSize || *size > maxFrame:
		err = fmt.Errorf("--size must be between %d and %d", idSize, maxFrame)
	case pipelined && o.Concurrency != o.Conns:
		err = errors.New("with --pipeline the floor runs one stream per connection: --concurrency must equal --conns")
	default:
		err = o.CheckLoopback(ctx, *addr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "echofloor:", err)
		return 2
	}

	bc := new(bench.ByteCounter)
	raws := make([]*net.TCPConn, o.Conns)
	conns := make([]net.Conn, o.Conns)
	for i := range raws {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", *addr)
		if err != nil {
			fmt.Fprintln(stderr, "echofloor:", err)
			return 1
		}
		defer nc.Close()
		raws[i], conns[i] = nc.(*net.TCPConn), bc.Wrap(nc)
	}
	cfg := o.Config(bc, stderr)
	var res *bench.Result
	if pipelined {
		res, err = bench.RunPipelined(ctx, cfg, o.Conns, o.Pipeline, func(ctx context.Context, i int) (bench.Pipe, error) {
			return newPipe(ctx, raws[i], conns[i], *size), nil
		})
		if err != nil {
			fmt.Fprintln(stderr, "echofloor:", err)
			return 1
		}
	} else {
		mux := make([]*muxConn, o.Conns)
		for i := range mux {
			mux[i] = newMuxConn(conns[i], *size)
		}
		res = bench.RunUnary(ctx, cfg, o.Concurrency, func(w int) bench.CallFunc {
			return mux[w%len(mux)].caller(uint64(w))
		})
	}
	if res.SnapshotErr != nil {
		fmt.Fprintln(stderr, "echofloor: reading counters:", res.SnapshotErr)
	}
	rep := o.Report("floor", "echo", *addr)
	rep.Fill(res, o.ServerPID != 0 && res.SnapshotErr == nil, o.ServerPprof != "" && res.SnapshotErr == nil)
	if err := o.Emit(stdout, rep, *asJSON); err != nil {
		fmt.Fprintln(stderr, "echofloor:", err)
		return 1
	}
	if len(rep.Errors) > 0 || rep.Calls == 0 {
		return 1
	}
	return 0
}

// appendFrame appends a frame of size payload bytes carrying id.
func appendFrame(b []byte, id uint64, size int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, make([]byte, size-idSize)...)
}

// readFrame reads a frame of the expected size from r into buf and returns
// its id.
func readFrame(r *bufio.Reader, buf []byte) (uint64, error) {
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return 0, err
	}
	if n := binary.BigEndian.Uint32(buf); int(n) != len(buf)-4 {
		return 0, status.Errorf(codes.DataLoss, "echo of %d bytes, sent %d", n, len(buf)-4)
	}
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(buf[4:]), nil
}

// muxConn shares one connection among callers: a caller appends its frame
// to the output and waits for its echo. The first caller to find no write
// in progress writes out everything queued, including what others append
// meanwhile, so concurrent callers share write calls.
type muxConn struct {
	nc   net.Conn
	size int // every frame's payload size

	mu       sync.Mutex
	out      []byte // frames waiting to be written
	spare    []byte
	flushing bool
	waiters  []waiter // callers in the order of their frames
	err      error
}

// waiter is a caller waiting for the echo of the frame carrying id.
type waiter struct {
	id   uint64
	done chan error
}

// newMuxConn returns a muxConn over nc for frames of size payload bytes.
func newMuxConn(nc net.Conn, size int) *muxConn {
	c := &muxConn{nc: nc, size: size}
	go c.read()
	return c
}

// caller returns a CallFunc sending frames that carry id.
func (c *muxConn) caller(id uint64) bench.CallFunc {
	frame := appendFrame(nil, id, c.size)
	done := make(chan error, 1)
	return func(ctx context.Context) error {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return c.err
		}
		c.out = append(c.out, frame...)
		c.waiters = append(c.waiters, waiter{id, done})
		if c.flushing {
			c.mu.Unlock()
		} else {
			c.flush()
		}
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// flush writes the queued frames until there are none. It is called with
// c.mu held and returns with it released.
func (c *muxConn) flush() {
	c.flushing = true
	for len(c.out) > 0 && c.err == nil {
		out := c.out
		c.out = c.spare[:0]
		c.mu.Unlock()
		_, err := c.nc.Write(out)
		c.mu.Lock()
		c.spare = out
		if err != nil {
			c.fail(status.Errorf(codes.Unavailable, "write: %v", err))
		}
	}
	c.flushing = false
	c.mu.Unlock()
}

// fail ends the connection with err, failing every waiting caller. It is
// called with c.mu held.
func (c *muxConn) fail(err error) {
	if c.err == nil {
		c.err = err
	}
	for _, w := range c.waiters {
		w.done <- err
	}
	c.waiters = nil
	_ = c.nc.Close()
}

// read completes the callers as their echoes arrive.
func (c *muxConn) read() {
	r := bufio.NewReader(c.nc)
	buf := make([]byte, 4+c.size)
	for {
		id, err := readFrame(r, buf)
		c.mu.Lock()
		if err == nil && len(c.waiters) == 0 {
			err = status.Error(codes.Internal, "an echo no caller waits for")
		}
		if err != nil {
			if status.Code(err) == codes.Unknown {
				err = status.Errorf(codes.Unavailable, "read: %v", err)
			}
			c.fail(err)
			c.mu.Unlock()
			return
		}
		w := c.waiters[0]
		c.waiters = c.waiters[1:]
		c.mu.Unlock()
		if w.id != id {
			w.done <- status.Errorf(codes.DataLoss, "echo of call %d answers call %d", id, w.id)
		} else {
			w.done <- nil
		}
	}
}

// pipe is a bench.Pipe over one connection: Send appends a frame to a
// bufio.Writer that Flush writes, Recv reads the echoes in order and
// CloseSend shuts the connection's write side, so the server closes once
// it has echoed everything.
type pipe struct {
	raw  *net.TCPConn
	w    *bufio.Writer
	r    *bufio.Reader
	size int
	in   []byte
	out  []byte
}

// newPipe returns a pipe over nc, whose raw connection is raw; when ctx is
// done a blocked Recv fails.
func newPipe(ctx context.Context, raw *net.TCPConn, nc net.Conn, size int) *pipe {
	context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	return &pipe{raw: raw, w: bufio.NewWriter(nc), r: bufio.NewReader(nc), size: size, in: make([]byte, 4+size), out: appendFrame(nil, 0, size)}
}

func (p *pipe) Send(id uint64) error {
	binary.BigEndian.PutUint64(p.out[4:], id)
	_, err := p.w.Write(p.out)
	return err
}

func (p *pipe) Flush() error { return p.w.Flush() }

func (p *pipe) Recv() (uint64, codes.Code, error) {
	id, err := readFrame(p.r, p.in)
	switch {
	case err == io.EOF:
		return 0, codes.OK, io.EOF
	case err != nil && status.Code(err) == codes.Unknown:
		return 0, codes.OK, status.Errorf(codes.Unavailable, "read: %v", err)
	}
	return id, codes.OK, err
}

func (p *pipe) CloseSend() error {
	if err := p.w.Flush(); err != nil {
		return err
	}
	return p.raw.CloseWrite()
}
