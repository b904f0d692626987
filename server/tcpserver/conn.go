package tcpserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"

	"github.com/calcrpc/calc/internal/wire"
)

// conn is one client connection. Its serve goroutine is the only reader;
// calls run in goroutines of their own and answer through out.
type conn struct {
	srv   *Server
	nc    net.Conn
	ready *readiness
	rd    *wire.Reader
	out   *wire.Writer

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	refs []methodRef
	hdr  wire.RequestHeader
	last uint32 // highest call id accepted

	// State of the inline call running on the reader goroutine, if any:
	// its decoder and interceptor chain are built once per connection.
	inlineCall   *call
	inlineDecode func(any) error
	inlineChain  grpc.UnaryServerInterceptor
	inlineNext   grpc.UnaryHandler
	chainInfo    *grpc.UnaryServerInfo
	chainFinal   grpc.UnaryHandler
	chainAt      int

	servedFrames bool      // this goroutine has served frames since its last idle wait
	idleSince    time.Time // start of the current idle wait
	park         parkState // guarded by the server's parker

	mu       sync.Mutex
	calls    map[uint32]*call // calls running in goroutines of their own; made on first use
	open     int              // accepted calls not yet answered, inline ones too
	answered sync.Cond        // signalled when open drops, on mu
	active   sync.WaitGroup   // calls not yet answered
	draining bool             // GOAWAY sent: no new calls
	closed   bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv: s,
		nc:  nc,
	}
	var raw syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	c.ready = newReadiness(raw)
	c.rd = wire.NewReader(nc, s.opts.MaxFrameSize)
	c.answered.L = &c.mu
	c.idleSince = time.Now()
	c.inlineDecode = func(v any) error { return unmarshalRequest(c.inlineCall.msg, v) }
	c.inlineChain = c.runChain
	c.inlineNext = c.chainNext
	c.out = wire.NewWriter(connWriter{c})
	c.ctx, c.cancel = context.WithCancel(peer.NewContext(context.Background(),
		&peer.Peer{Addr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr()}))
	return c
}

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
		c.shutdownConn()
		return
	}
	c.run()
}

// run reads frames on the connection's current goroutine. When the
// connection has been idle for shedStackAfter, run hands it to the parker
// (which gives it a new goroutine when it turns readable), or else to a
// fresh goroutine, and returns: an idle connection keeps no stack, or the
// smallest, whatever depth the last burst's handlers reached.
func (c *conn) run() {
	defer func() {
		if r := recover(); r != nil {
			c.srv.logger.Error("panic serving connection", "peer", c.nc.RemoteAddr().String(), "panic", r)
			c.shutdownConn()
		}
	}()
	err := c.readFrames()
	if errors.Is(err, errShedStack) {
		// Idle: the parker holds the connection with no goroutine at all
		// (Linux), or a fresh goroutine waits on a small stack.
		if !c.srv.parker.park(c) {
			go c.run()
		}
		return
	}
	c.end(err)
}

// end closes the connection after readFrames stopped with err, first
// sending the GOAWAY that err calls for.
func (c *conn) end(err error) {
	_ = c.out.Uncork() // whatever the burst answered leaves now
	var ce *connError
	switch {
	case errors.As(err, &ce):
		c.goAway(ce.code, ce.msg)
	case errors.Is(err, wire.ErrFrameTooLarge):
		c.goAway(codes.ResourceExhausted, err.Error())
	case errors.Is(err, wire.ErrFrameTooSmall), errors.Is(err, wire.ErrUnknownKind):
		c.goAway(codes.InvalidArgument, err.Error())
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.goAway(codes.DeadlineExceeded, "frame not completed within "+c.srv.opts.FrameTimeout.String())
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrTruncated) && !errors.Is(err, net.ErrClosed):
		c.srv.logger.Debug("connection read failed", "peer", c.nc.RemoteAddr().String(), "error", err)
	}
	c.shutdownConn()
}

// shutdownConn cancels the connection's calls, waits for their answers,
// closes the connection and forgets it.
func (c *conn) shutdownConn() {
	c.cancel()
	c.active.Wait()
	c.close()
	c.rd.Release()
	c.srv.untrack(c)
}

// shedStackAfter is how long a connection waits idle before its goroutine
// parks it, or moves to a fresh goroutine (see run).
const shedStackAfter = 100 * time.Millisecond

// errShedStack is awaitBurst's signal to park or move to a fresh goroutine.
var errShedStack = errors.New("tcpserver: idle: park, or move to a fresh goroutine")

// handshake reads the preface and sends SETTINGS, or answers a stray client
// and reports false.
func (c *conn) handshake() bool {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.HandshakeTimeout))
	version, got, err := wire.ReadPreface(c.nc)
	switch {
	case errors.Is(err, wire.ErrBadMagic):
		if looksLikeHTTP(got) {
			c.refuseHTTP()
		}
		return false
	case err != nil:
		return false
	case version != wire.Version:
		c.goAway(codes.FailedPrecondition, fmt.Sprintf("unsupported protocol version %d; this server speaks version %d", version, wire.Version))
		return false
	}
	c.out.Send(func(b []byte) []byte { return append(b, c.srv.settings...) })
	c.servedFrames = true // the first request is awaited like the next burst
	return true
}

// httpRefusal is what an HTTP client that dialled the raw TCP port reads.
const httpRefusal = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 89\r\n\r\n" +
	"This port speaks calc's raw TCP protocol (PROTOCOL.md); HTTP/2 gRPC is on the gRPC port.\n"

// refuseHTTP answers an HTTP client with a 400 and closes gracefully: the
// write side first, then after discarding what the client still sends
// (briefly), so the kernel does not reset the connection before the client
// has read the answer.
func (c *conn) refuseHTTP() {
	_ = c.nc.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c.nc, httpRefusal); err != nil {
		return
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, 64<<10))
	}
}

// looksLikeHTTP reports whether the first bytes of a connection start an
// HTTP/1 request.
func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC", "CONN", "TRAC", "PRI "} {
		if bytes.HasPrefix(b, []byte(m)) {
			return true
		}
	}
	return false
}

// readFrames reads and dispatches frames until an error. Right after a
// burst it waits for the next one (awaitBurst) for up to shedStackAfter;
// after that it returns errShedStack, and run parks the connection.
func (c *conn) readFrames() error {
	opts := &c.srv.opts
	corked := false
	served := 0 // frames served in this burst
	for {
		if !c.rd.HasFrame() {
			if corked { // the burst is done: its answers leave now
				_ = c.out.Uncork()
				corked = false
			}
			if c.rd.Buffered() == 0 {
				if err := c.awaitBurst(); err != nil {
					return err
				}
			}
			_ = c.nc.SetReadDeadline(time.Now().Add(opts.FrameTimeout))
		}
		f, err := c.rd.ReadFrame()
		if err != nil {
			return err
		}
		if !corked {
			c.out.Cork()
			corked, served = true, 0
			c.servedFrames = true
		}
		if err := c.dispatch(f); err != nil {
			return err
		}
		if served++; served%burstFlushFrames == 0 {
			_ = c.out.Flush() // the client starts on these while we go on
		}
	}
}

// burstFlushFrames is how many frames of a burst the server serves between
// writes of their answers. Answering a long burst in one write would save
// write calls, but a closed-loop client would then wait idle for the whole
// burst, and the server for the client's next one: a write every 16 frames
// lets both work at once (at 64 callers on one connection, about 1.4 times
// the calls per second of one write per burst).
const burstFlushFrames = 16

// awaitBurst waits for the first bytes of the next burst. A goroutine that
// has just served frames first reads directly, holding the read buffer, for
// up to hotReadWindow, so a busy connection pays no readiness check; then
// it gives the buffer back and waits for readability; after shedStackAfter
// of quiet it reports errShedStack. A goroutine that has served nothing
// yet (woken from the parker, or the fallback's fresh one) waits in
// waitIdle.
func (c *conn) awaitBurst() error {
	if !c.servedFrames {
		return c.waitIdle()
	}
	c.idleSince = time.Now()
	_ = c.nc.SetReadDeadline(c.idleSince.Add(hotReadWindow))
	if err := c.rd.Fill(); !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.rd.Release()
	_ = c.nc.SetReadDeadline(c.idleSince.Add(shedStackAfter))
	if err := c.ready.wait(); !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.servedFrames = false
	return errShedStack
}

// hotReadWindow is how long a connection that just served a burst reads
// directly for the next one before it gives its read buffer back.
const hotReadWindow = time.Millisecond

// waitIdle releases the read buffer and waits until the connection is
// readable. When the idle timeout passes with no call in flight it sends
// GOAWAY and reports io.EOF.
func (c *conn) waitIdle() error {
	c.rd.Release()
	for {
		var deadline time.Time
		if idle := c.srv.opts.IdleTimeout; idle > 0 {
			deadline = c.idleSince.Add(idle)
		}
		_ = c.nc.SetReadDeadline(deadline)
		err := c.ready.wait()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		c.mu.Lock()
		busy := c.open > 0
		c.mu.Unlock()
		if !busy {
			c.goAway(codes.OK, "idle timeout")
			return io.EOF
		}
		c.idleSince = time.Now()
	}
}

// dispatch handles one frame.
func (c *conn) dispatch(f wire.Frame) error {
	switch f.Kind {
	case wire.KindRequest:
		return c.request(f)
	case wire.KindMessage, wire.KindHalfClose:
		if cl := c.lookup(f.ID); cl != nil && cl.stream != nil {
			return cl.stream.deliver(c, f)
		}
	case wire.KindCancel:
		if cl := c.lookup(f.ID); cl != nil {
			cl.cancel()
		}
	case wire.KindPing:
		if f.ID != 0 || len(f.Payload) > 64 {
			return &connError{codes.InvalidArgument, "PING must have id 0 and at most 64 payload bytes"}
		}
		c.out.Send(func(b []byte) []byte { return wire.AppendFrame(b, wire.KindPong, 0, 0, f.Payload) })
	case wire.KindPong:
		if f.ID != 0 {
			return &connError{codes.InvalidArgument, "PONG must have id 0"}
		}
	default:
		return &connError{codes.InvalidArgument, fmt.Sprintf("a client may not send %s frames", f.Kind)}
	}
	return nil
}

// lookup returns the call in flight with id, or nil.
func (c *conn) lookup(id uint32) *call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// goAway sends GOAWAY with the last accepted call id and stops accepting
// calls; the connection closes once every accepted call is answered.
func (c *conn) goAway(code codes.Code, msg string) {
	c.mu.Lock()
	if c.draining || c.closed {
		c.mu.Unlock()
		return
	}
	c.draining = true
	idle := c.open == 0
	last := c.last
	c.mu.Unlock()
	c.out.Send(func(b []byte) []byte {
		return wire.AppendGoAwayFrame(b, last, statusProto(code, msg))
	})
	if code != codes.OK {
		c.cancel() // an error: the accepted calls are cancelled, then answered
	}
	if idle {
		c.close()
	}
}

// finish forgets an answered call, closing a draining connection after its
// last call.
func (c *conn) finish(cl *call) {
	cl.cancel() // the call's context ends with the call
	c.mu.Lock()
	delete(c.calls, cl.id)
	c.open--
	closeNow := c.draining && c.open == 0
	c.mu.Unlock()
	c.answered.Signal()
	c.active.Done()
	if closeNow {
		c.close()
	}
}

// runChain runs the server's unary interceptors around an inline call with
// no per-call closure: chainNext walks the chain with an index kept on the
// connection, restored on return so an interceptor may call its handler
// more than once.
func (c *conn) runChain(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c.chainInfo, c.chainFinal, c.chainAt = info, handler, 0
	return c.chainNext(ctx, req)
}

func (c *conn) chainNext(ctx context.Context, req any) (any, error) {
	ics := c.srv.opts.UnaryInterceptors
	i := c.chainAt
	if i == len(ics) {
		return c.chainFinal(ctx, req)
	}
	c.chainAt = i + 1
	defer func() { c.chainAt = i }()
	return ics[i](ctx, req, c.chainInfo, c.inlineNext)
}

// close flushes what is queued and closes the socket, ending serve's read.
func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.out.CloseAfterFlush()
	c.cancel()
}

// connWriter is the socket as the connection's Writer sees it. Every write
// gets WriteTimeout to make progress, so a peer that stops reading cannot
// hold a call forever. The Writer is the only closer of the socket, and
// closing goes through the parker (parker.closeConn).
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	_ = w.c.nc.SetWriteDeadline(time.Now().Add(w.c.srv.opts.WriteTimeout))
	return w.c.nc.Write(p)
}

func (w connWriter) Close() error { return w.c.srv.parker.closeConn(w.c) }
