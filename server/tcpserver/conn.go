package tcpserver

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/internal/busypoll"
	"github.com/calcrpc/calc/internal/wire"
)

// conn is one client connection. Its goroutine (one at a time: see
// read.go) is the only reader and runs dispatch; calls answer through out.
// It is also the connection's context (connctx.go), the parent of its
// calls'. Its fields are ordered so that it fits a 384-byte allocation
// (the size class below 416): thousands of idle connections each hold
// one.
type conn struct {
	srv     *Server
	nc      net.Conn
	peerKey string // the remote address, as per-address limits count it
	ready   *readiness
	rd      *wire.Reader // while the connection's goroutine reads; nil while idle (takeReader)
	out     *wire.Writer

	base       context.Context         // the context's end and its cause (connctx.go)
	cancelBase context.CancelCauseFunc // ends base; cancel sets flagCtxEnding first
	peer       atomic.Pointer[peer.Peer]

	// Owned by the connection's goroutine.
	refs   []methodRef
	hdr    wire.RequestHeader
	inline inlineRunner
	// idleSince is the start of the current idle wait, as a time on the
	// package's monotonic clock (monoNow); the idler reads it while the
	// connection is parked.
	idleSince time.Duration
	last      uint32 // highest call id accepted
	served    uint32 // frames served in this burst

	flags        atomic.Uint32 // flagCtxEnding, flagWriting, flagDetached
	servedFrames bool          // this goroutine has served frames since its last idle wait
	corked       bool          // the writer is corked for the burst being served
	inStream     bool          // an inline stream runs on this goroutine (stream.go)
	// Written once by establish, under the server's mu, before any reader.
	established bool
	park        parkState // guarded by the idler

	// wake's state: an inline stream's wait for input ends when its
	// context does (read.go, awaitWakeable).
	wakeMu  sync.Mutex
	waiting bool // in awaitWakeable's wait
	woken   bool // wake was called and the wait has not yet seen it
	// poller is the connection goroutine's (read.go), not wakeMu's: it
	// sits in the padding before mu, so that a conn stays within 384 bytes.
	poller busypoll.Poller

	draining bool // GOAWAY being sent: no new calls
	goneAway bool // GOAWAY queued: the last answer closes the connection
	closed   bool
	// readerDone is set when the connection's goroutine has stopped
	// reading for good (shutdown); lingering while the socket is
	// half-closed and the reader still discards what arrives (write.go).
	readerDone bool
	// The four above and the fields below are guarded by mu.
	mu        sync.Mutex
	open      int32            // the in-flight counter: calls accepted and not yet answered
	streams   int32            // how many of them are streams
	calls     map[uint32]*call // calls running in goroutines of their own; made on first use
	answered  sync.Cond        // broadcast when open drops, on mu
	ageTimer  *time.Timer      // MaxConnectionAge, then its grace (age.go)
	lingering *time.Timer
}

// The bits of conn.flags, the connection's state that goroutines read
// without a lock. One word holds them all: a conn fits its size class
// with no room for a second.
const (
	// flagCtxEnding is set before the connection's context is cancelled:
	// call.Err's fast path reads it.
	flagCtxEnding uint32 = 1 << iota
	// flagWriting is set while the writer uses the socket (write.go).
	flagWriting
	// flagDetached is set while the idler holds the socket outside Go's
	// netpoller (park_linux.go); the writer re-attaches it before use.
	flagDetached
)

func newConn(s *Server, nc net.Conn, peerKey string) *conn {
	c := &conn{srv: s, nc: nc, peerKey: peerKey}
	var raw syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	c.ready = newReadiness(raw)
	c.answered.L = &c.mu
	c.idleSince = monoNow()
	c.inline.init(c)
	c.out = wire.NewWriter(connWriter{c})
	c.out.SetCodec(s.opts.Codec)
	c.base, c.cancelBase = context.WithCancelCause(context.Background())
	return c
}

// takeReader gives c a frame reader from the server's pool, unless it
// has one: an idle connection holds none.
func (c *conn) takeReader() {
	if c.rd != nil {
		return
	}
	rd, _ := c.srv.readers.Get().(*wire.Reader)
	if rd == nil {
		rd = wire.NewReader(nil, c.srv.opts.MaxFrameSize)
		rd.SetBudget(c.srv.frames)
	}
	rd.Reset(connReader{c})
	c.rd = rd
}

// dropReader gives c's reader, which buffers nothing, back to the pool:
// the connection is going idle.
func (c *conn) dropReader() {
	c.rd.Reset(nil)
	c.srv.readers.Put(c.rd)
	c.rd = nil
}

// errDrainDeadline ends the calls still running when Shutdown's context
// ends: they answer UNAVAILABLE, and a client may retry them elsewhere.
var errDrainDeadline = status.Error(codes.Unavailable, "server shutting down: drain deadline reached")

// connError is a protocol violation that ends the connection with a GOAWAY.
type connError struct {
	code codes.Code
	msg  string
}

func (e *connError) Error() string { return e.msg }

// serve runs the connection: handshake, then frames until the peer leaves
// or breaks the protocol. Every accepted call is answered before the
// connection closes.
func (c *conn) serve() {
	if !c.handshake() {
		c.shutdown()
		return
	}
	c.run()
}

// run serves frames on the connection's current goroutine until the
// connection ends, or until it goes idle and the idler takes it (which
// starts run again on a new goroutine when it wakes). A panic outside any
// handler (handlers recover their own, in call.go) is a bug: it is logged
// with its stack and ends this connection only.
func (c *conn) run() {
	defer func() {
		if r := recover(); r != nil {
			c.srv.logger.Error("panic serving connection", "peer", addrString(c.nc.RemoteAddr()),
				"panic", r, "stack", string(debug.Stack()))
			c.end(&connError{codes.Internal, "internal error"})
		}
	}()
	c.takeReader()
	err := func() error {
		c.srv.serving.Add(1) // busy, for busypoll, but for its waits (awaitBurst)
		defer c.srv.serving.Add(-1)
		return c.readFrames()
	}()
	if errors.Is(err, errIdle) {
		c.dropReader()
		c.srv.idle.park(c) // c's goroutine ends here; the idler runs it again
		return
	}
	c.end(err)
}

// end closes the connection after reading stopped with err, first sending
// the GOAWAY that err calls for.
func (c *conn) end(err error) {
	_ = c.out.Uncork() // whatever the burst answered leaves now
	var ce *connError
	switch {
	case errors.As(err, &ce):
		c.goAway(ce.code, ce.msg)
	case errors.Is(err, wire.ErrBudgetExhausted):
		c.srv.counters.frameBudget.Add(1)
		c.goAway(codes.ResourceExhausted, err.Error())
	case errors.Is(err, wire.ErrFrameTooLarge):
		c.goAway(codes.ResourceExhausted, err.Error())
	case errors.Is(err, wire.ErrFrameTooSmall), errors.Is(err, wire.ErrUnknownKind):
		c.goAway(codes.InvalidArgument, err.Error())
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.goAway(codes.DeadlineExceeded, "frame not completed within "+c.srv.opts.FrameTimeout.String())
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrTruncated) && !errors.Is(err, net.ErrClosed):
		c.srv.logger.Debug("connection read failed", "peer", addrString(c.nc.RemoteAddr()), "error", err)
	}
	c.shutdown()
}

// shutdown ends the connection's calls, waits until each has answered
// and until a GOAWAY that another goroutine is sending is queued,
// closes the connection and forgets it. Only the connection's goroutine
// calls it, once.
func (c *conn) shutdown() {
	c.cancel(context.Canceled)
	c.mu.Lock()
	for c.open > 0 || c.draining && !c.goneAway {
		c.answered.Wait()
	}
	c.readerDone = true
	lingering := c.lingering != nil
	if lingering {
		c.lingering.Stop()
	}
	c.mu.Unlock()
	c.close()
	if lingering { // the peer has closed its side too: close for good
		_ = c.srv.idle.closeConn(c)
	}
	if c.rd != nil { // nil if the handshake failed
		c.rd.Release()
	}
	c.srv.forget(c)
}

// accept counts a new call in flight, waiting first while
// MaxConcurrentCalls are (the connection's backpressure: its goroutine
// reads nothing meanwhile). A stream must also fit MaxConcurrentStreams
// and the server's MaxStreams; accept reports a refused stream as a
// RESOURCE_EXHAUSTED status for its call, which is then answered with it.
// It reports false when the connection is draining: the call is not
// accepted, and the client learns from GOAWAY's last id that it may retry.
func (c *conn) accept(id uint32, stream bool) (ok bool, refusal *status.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for int(c.open) >= c.srv.opts.MaxConcurrentCalls && !c.draining {
		c.answered.Wait()
	}
	if c.draining {
		return false, nil
	}
	c.last = id // read under mu by goAway
	c.open++
	if !stream {
		return true, nil
	}
	switch {
	case int(c.streams) >= c.srv.opts.MaxConcurrentStreams:
		c.srv.counters.streamsRefused[refusedStreamsPerConn].Add(1)
		return true, status.Newf(codes.ResourceExhausted, "more than %d streams open on this connection", c.srv.opts.MaxConcurrentStreams)
	case !c.srv.takeStream():
		c.srv.counters.streamsRefused[refusedMaxStreams].Add(1)
		return true, status.Newf(codes.ResourceExhausted, "the server has %d streams open, its limit", c.srv.opts.MaxStreams)
	}
	c.streams++
	return true, nil
}

// finish counts an answered call out of the in-flight counter, closing a
// draining connection after its last call.
func (c *conn) finish(cl *call) {
	cl.cancel() // the call's context ends with the call
	c.mu.Lock()
	delete(c.calls, cl.id)
	c.open--
	closeNow := c.goneAway && c.open == 0
	c.mu.Unlock()
	c.answered.Broadcast()
	if closeNow {
		c.close()
	}
}

// releaseStream gives a stream's place back, on the connection and on the
// server. end calls it before the stream's STATUS leaves, so a client that
// opens its next stream on reading it finds the place free.
func (c *conn) releaseStream() {
	c.mu.Lock()
	c.streams--
	c.mu.Unlock()
	c.srv.giveStream()
}

// track registers a call that runs in a goroutine of its own, so CANCEL,
// MESSAGE and HALF_CLOSE frames can find it.
func (c *conn) track(cl *call) {
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[uint32]*call{}
	}
	c.calls[cl.id] = cl
	c.mu.Unlock()
}

// lookup returns the call in flight with id, or nil.
func (c *conn) lookup(id uint32) *call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// goAway sends GOAWAY with the last accepted call id and stops accepting
// calls; the connection closes once every accepted call is answered. A
// GOAWAY for an error also ends the accepted calls' contexts.
//
// Only once the GOAWAY is queued may the last answer, or the reader's
// shutdown, close the connection (goneAway): one that came between the
// GOAWAY's decision and its Send would otherwise close the writer first,
// and the client would see the connection end without the GOAWAY.
func (c *conn) goAway(code codes.Code, msg string) {
	c.mu.Lock()
	if c.draining || c.closed {
		c.mu.Unlock()
		return
	}
	c.draining = true
	last := c.last
	c.mu.Unlock()
	c.answered.Broadcast() // a reader held by backpressure stops waiting
	c.srv.counters.goAwaySent(code)
	c.out.Send(func(b []byte) []byte { return wire.AppendGoAwayFrame(b, last, statusProto(code, msg)) })
	if code != codes.OK {
		c.cancel(context.Canceled)
	}
	c.mu.Lock()
	c.goneAway = true
	idle := c.open == 0
	c.mu.Unlock()
	c.answered.Broadcast() // shutdown may be waiting for the GOAWAY
	if idle {
		c.close()
	}
}

// close flushes what is queued and closes the socket, ending the reader's
// read.
func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.ageTimer != nil {
		c.ageTimer.Stop()
	}
	c.mu.Unlock()
	c.out.CloseAfterFlush()
	c.cancel(context.Canceled)
}
