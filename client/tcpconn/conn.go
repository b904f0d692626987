// Package tcpconn is the Go client of calc's raw TCP protocol
// (PROTOCOL.md). A *Conn implements grpc.ClientConnInterface, so the
// generated gRPC client works over raw TCP unchanged:
//
//	conn, err := tcpconn.Dial(ctx, "127.0.0.1:4000", tcpconn.Options{})
//	...
//	client := calculatorv1.NewCalculatorServiceClient(conn)
//	resp, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{...})
//
// Calls from any number of goroutines are multiplexed on the one
// connection and may complete in any order. A context's deadline travels to
// the server as the call's budget and its cancellation sends CANCEL.
// Errors are gRPC statuses (status.FromError, status.Code) with the same
// codes and details the gRPC endpoint returns. When the server sends
// GOAWAY, new calls and calls it did not accept fail with UNAVAILABLE and
// match errors.Is(err, ErrNotProcessed): they are safe to retry on a new
// connection.
//
// # Client: reconnecting and balancing
//
// A Conn is one connection and stays broken once lost. A Client keeps a
// Conn to every endpoint of its target connected and spreads calls over
// them; it implements grpc.ClientConnInterface too:
//
//	cc, err := tcpconn.NewClient("dns:///calc.internal:4000", tcpconn.ClientOptions{})
//	...
//	defer cc.Close()
//	client := calculatorv1.NewCalculatorServiceClient(cc)
//
// The target is HOST:PORT, a static list "a:4000,b:4000", or
// dns:///HOST:PORT, whose host is resolved to all its addresses, again
// whenever a connection is lost or an attempt fails and every 30 s
// (ResolveInterval); endpoints that disappear are closed once their calls
// end. Each endpoint reconnects on its own: at once after losing a READY
// connection, then with gRPC's connection backoff (1 s, growing 1.6 times
// per failure up to 120 s, ±20% jitter, each attempt given at least 20 s),
// reset by a successful handshake. Calls go to the READY connections in
// turn (RoundRobin) or to the less busy of two picked at random
// (PowerOfTwoChoices). With none READY a call waits while an endpoint is
// CONNECTING and fails fast with UNAVAILABLE once all are in
// TRANSIENT_FAILURE, as gRPC's calls do; with grpc.WaitForReady(true) or
// ClientOptions.WaitForReady it waits until its deadline. A call the
// server never processed (ErrNotProcessed: above a GOAWAY's last id, or
// started as its connection ended) is made again on another connection
// under the same deadline, at most 5 attempts in all; with RetryIdempotent
// so is one that failed with UNAVAILABLE, after a backoff. State and
// WaitForStateChange report the connectivity state aggregated as gRPC
// does.
//
// # Observing calls
//
// Options.TracerProvider makes a client span per call, shaped as otelgrpc's
// over gRPC, and sends its W3C traceparent in the call's metadata, so that
// a calcd that traces puts its server span in the same trace (PROTOCOL.md,
// Trace context). Options.UnaryInterceptors and StreamInterceptors run
// grpc-go client interceptors around every call, such as
// go-grpc-middleware's client metrics. A Client runs both once per call,
// around its attempts.
package tcpconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/internal/busypoll"
	"github.com/calcrpc/calc/internal/wire"
)

// DefaultKeepaliveTimeout is how long a Conn waits for any frame after a
// PING before it gives the connection up.
const DefaultKeepaliveTimeout = 20 * time.Second

// ErrNotProcessed is matched (errors.Is) by the error of a call the server
// did not process: one above the last id of the server's GOAWAY, or one
// started after the connection had ended, so that nothing of it was
// written. Retrying it is safe.
var ErrNotProcessed = errors.New("tcpconn: call not processed by the server")

// Options configures a Conn. The zero value means the documented defaults.
type Options struct {
	// KeepaliveInterval is how often the Conn pings the server; 0 means half
	// the server's announced idle timeout (or no pings if it has none) and
	// a negative value disables pings.
	KeepaliveInterval time.Duration
	// KeepaliveTimeout is how long to wait for a frame after a ping before
	// closing the connection; 0 means DefaultKeepaliveTimeout.
	KeepaliveTimeout time.Duration
	// CompressThreshold is the message size at which requests are
	// snappy-compressed; 0 means the server's announced threshold and a
	// negative value disables compression.
	CompressThreshold int
	// MaxMessageSize caps a received message after decompression; 0 means
	// wire.DefaultMaxMessageSize.
	MaxMessageSize int
	// TLSConfig, when set, runs the connection over TLS (PROTOCOL.md, TLS)
	// with a clone of it requiring TLS 1.3 and offering ALPN "calc/1".
	// An empty ServerName is Dial's host (NewConn's: the remote IP
	// address). nil means plaintext.
	TLSConfig *tls.Config
	// TracerProvider, when set, traces every call with a client span
	// shaped as otelgrpc.NewClientHandler's spans over gRPC, and sends the
	// span's context to the server in the call's traceparent and
	// tracestate metadata (W3C Trace Context), so that the server's span
	// joins the caller's trace. nil traces nothing, at no cost.
	TracerProvider trace.TracerProvider
	// Propagator writes that context into the metadata; nil means W3C
	// Trace Context and Baggage.
	Propagator propagation.TextMapPropagator
	// UnaryInterceptors and StreamInterceptors run around every call,
	// first outermost, as grpc.WithChainUnaryInterceptor's and
	// grpc.WithChainStreamInterceptor's do (client metrics such as
	// go-grpc-middleware's grpc_client_* go here). Their *grpc.ClientConn
	// argument is nil. A Client runs them once per call, around its
	// retries, and its span inside them.
	UnaryInterceptors  []grpc.UnaryClientInterceptor
	StreamInterceptors []grpc.StreamClientInterceptor
	// Codec encodes requests and decodes responses in place of
	// protobuf-go, for programs that know a faster way for their messages
	// (calccodec.Codec); nil means protobuf-go.
	Codec wire.Codec
	// BusyPoll is how long the reader, having read several answers at
	// once, polls the socket for the next ones, yielding its processor
	// between checks, before it parks on the netpoller: with many calls in
	// flight the server answers again within microseconds, and a parked
	// reader costs a wake-up that takes longer (package busypoll has the
	// rules that keep polling cheap). 0 means busypoll.Default (50 µs), a
	// negative value disables polling, and more than busypoll.Max (1 ms)
	// means busypoll.Max. A TLS connection does not poll.
	BusyPoll time.Duration
}

// Conn is a raw TCP connection to a calc server. It is safe for concurrent
// use.
type Conn struct {
	nc         net.Conn
	sock       busypoll.Socket // nc's socket, for polling; nil if it cannot be checked
	poller     busypoll.Poller // the reader's (conn.go, readBurst)
	out        *wire.Writer
	rd         *wire.Reader
	opts       Options
	threshold  int
	settings   wire.Settings
	readerOut  chan struct{} // closed when the reader goroutine exits
	readerWake chan struct{} // wakes the reader to take the reading role (role.go)
	retake     time.Duration // readerRetake
	ended      chan struct{} // closed at GOAWAY, the end, or a failed write: no more calls
	endOnce    sync.Once
	heard      atomic.Bool   // set on every frame received, cleared by keepalive
	kick       chan struct{} // wakes the flusher
	kicked     atomic.Bool   // a wake-up is pending: no need to send another
	flusher    sync.Once     // starts the flusher on the first stream message
	obs        observers

	mu      sync.Mutex
	nextID  uint32
	refs    map[string]uint32
	pending map[uint32]*pending
	err     error // set once: why the connection ended or drains
	goAway  bool
	role    uint8  // who reads the connection: roleFree, roleReader, roleCaller
	reading uint32 // the call whose caller reads (roleCaller)

	callerReads bool        // callerReads, and nc has read deadlines
	failed      atomic.Bool // fail ran: the reader reads no more
}

// pending is a call waiting for its answer.
type pending struct {
	reply  proto.Message // unary: where the response goes
	done   chan struct{} // unary: signalled once with err set
	err    error
	stream *clientStream // streaming calls
}

var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan struct{}, 1)} }}

// Dial connects to a calc raw TCP server at addr, sends the preface and
// waits for the server's SETTINGS. ctx bounds the whole handshake: if its
// deadline passes first Dial fails with DEADLINE_EXCEEDED, if it is
// cancelled with CANCELLED; a server it cannot reach or that does not
// complete the handshake gives UNAVAILABLE.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, dialError(addr, err)
	}
	opts.TLSConfig = withServerName(opts.TLSConfig, addr)
	c, err := NewConn(ctx, nc, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// dialError is the status of a failure to open a socket to addr.
func dialError(addr string, err error) error {
	code := codes.Unavailable
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Errorf(code, "tcpconn: dial %s: %v", addr, err)
}

// NewConn runs the client handshake (TLS first, with opts.TLSConfig) on an
// established connection nc and returns the Conn using it.
func NewConn(ctx context.Context, nc net.Conn, opts Options) (*Conn, error) {
	if opts.TLSConfig != nil {
		var err error
		if nc, err = startTLS(ctx, nc, opts.TLSConfig); err != nil {
			return nil, err
		}
	}
	if opts.MaxMessageSize == 0 {
		opts.MaxMessageSize = wire.DefaultMaxMessageSize
	}
	if opts.KeepaliveTimeout == 0 {
		opts.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if opts.BusyPoll == 0 {
		opts.BusyPoll = busypoll.Default
	}
	c := &Conn{
		nc:         nc,
		sock:       busypoll.NewSocket(nc),
		out:        wire.NewWriter(halfCloser{nc}),
		rd:         wire.NewReader(nc, opts.MaxMessageSize+wire.DefaultMaxFrameSize-wire.DefaultMaxMessageSize),
		opts:       opts,
		readerOut:  make(chan struct{}),
		readerWake: make(chan struct{}, 1),
		retake:     readerRetake,
		ended:      make(chan struct{}),
		kick:       make(chan struct{}, 1),
		refs:       map[string]uint32{},
		pending:    map[uint32]*pending{},
		role:       roleReader,
	}
	c.obs = newObservers(opts, c.tracedInvoke, c.tracedStream)
	c.out.SetCodec(opts.Codec)
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	err := c.handshake()
	if !stop() || ctx.Err() != nil {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	c.callerReads = callerReads && nc.SetReadDeadline(time.Time{}) == nil
	c.threshold = opts.CompressThreshold
	if c.threshold == 0 {
		c.threshold = int(c.settings.CompressThreshold)
	}
	go c.read()
	if every := c.keepaliveInterval(); every > 0 {
		go c.keepalive(every)
	}
	return c, nil
}

// halfCloser is the connection as its Writer sees it: a failed write
// closes only the sending side where the connection allows it (TCP), so
// that the reader still reads what the server sent before, such as the
// GOAWAY that says which calls it never processed; the reader then closes
// the connection at its end.
type halfCloser struct{ net.Conn }

func (h halfCloser) Close() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return h.Conn.Close()
}

// handshake sends the preface and reads the server's first frame. An I/O
// error is UNAVAILABLE, or DEADLINE_EXCEEDED if the connection's deadline
// (NewConn's ctx's) passed. A server that answers in HTTP fails it at once
// with UNAVAILABLE (sniffHTTP).
func (c *Conn) handshake() error {
	ioCode := func(err error) codes.Code {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return codes.DeadlineExceeded
		}
		return codes.Unavailable
	}
	if _, err := c.nc.Write(wire.AppendPreface(nil)); err != nil {
		return status.Errorf(ioCode(err), "tcpconn: sending preface: %v", err)
	}
	// The server's first frame has at least wire.FrameOverhead bytes; the
	// first sniffSize of them are read alone to recognise an HTTP server,
	// whose bytes would otherwise read as a frame length to wait for. The
	// rest of the frame is read up to the end its length prefix gives, so
	// that c.rd starts at the next byte.
	head := make([]byte, sniffSize)
	if _, err := io.ReadFull(c.nc, head); err != nil {
		return status.Errorf(ioCode(err), "tcpconn: reading server settings: %v", err)
	}
	if err := sniffHTTP(head, c.nc.RemoteAddr()); err != nil {
		return err
	}
	rest := wire.LengthSize + int64(binary.BigEndian.Uint32(head)) - sniffSize
	first := wire.NewReader(io.MultiReader(bytes.NewReader(head), io.LimitReader(c.nc, rest)), 0)
	defer first.Release()
	f, err := first.ReadFrame()
	if err != nil {
		return status.Errorf(ioCode(err), "tcpconn: reading server settings: %v", err)
	}
	switch f.Kind {
	case wire.KindSettings:
		c.settings, err = wire.ParseSettings(f.Payload)
		if err != nil {
			return status.Errorf(codes.Internal, "tcpconn: %v", err)
		}
		return nil
	case wire.KindGoAway:
		_, st, err := wire.ParseGoAway(f.Payload)
		if err != nil {
			return status.Errorf(codes.Internal, "tcpconn: %v", err)
		}
		return status.ErrorProto(st)
	default:
		return status.Errorf(codes.Internal, "tcpconn: server sent %s before SETTINGS", f.Kind)
	}
}

func (c *Conn) keepaliveInterval() time.Duration {
	switch {
	case c.opts.KeepaliveInterval != 0:
		return max(c.opts.KeepaliveInterval, 0)
	case c.settings.IdleTimeout > 0:
		return c.settings.IdleTimeout / 2
	}
	return 0
}

// Close closes the connection; calls in flight fail with CANCELLED.
func (c *Conn) Close() error {
	c.fail(status.Error(codes.Canceled, "tcpconn: connection closed by the client"))
	c.out.CloseAfterFlush()
	<-c.readerOut
	return nil
}

// isEnded reports whether the connection takes no more calls: it got
// GOAWAY, ended, or failed to write.
func (c *Conn) isEnded() bool {
	select {
	case <-c.ended:
		return true
	default:
		return false
	}
}

// isGone reports whether the connection has ended, its reader gone.
func (c *Conn) isGone() bool {
	select {
	case <-c.readerOut:
		return true
	default:
		return false
	}
}

// fail ends the connection with err, failing every pending call.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil || c.goAway {
		c.err = err
	}
	calls := c.pending
	c.pending = map[uint32]*pending{}
	c.failed.Store(true)
	c.mu.Unlock()
	c.endOnce.Do(func() { close(c.ended) })
	_ = c.nc.Close()
	c.wakeReader() // to read the end, if nobody reads
	for _, p := range calls {
		p.finish(err)
	}
}

// finish completes a pending call with err.
func (p *pending) finish(err error) {
	if p.stream != nil {
		p.stream.end(err)
		return
	}
	p.err = err
	p.done <- struct{}{}
}

// start sends a REQUEST frame for method carrying msg (nil for a stream)
// and the metadata of ctx and extra (key, value, ..., which replace the
// same keys of ctx's), and registers p under its id. Ids are assigned inside the writer's lock,
// so they reach the server in increasing order. reads reports that the
// unary caller, alone on the connection, was given the reading role and
// reads its answer itself (readOwn).
func (c *Conn) start(ctx context.Context, method string, msg []byte, p *pending, extra []string) (id uint32, reads bool, err error) {
	h := wire.RequestHeader{}
	if d, ok := ctx.Deadline(); ok {
		h.HasTimeout, h.Timeout = true, time.Until(d)
		if h.Timeout <= 0 {
			return 0, false, status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
		}
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		for k, vs := range md {
			if hasKey(extra, k) {
				continue
			}
			for _, v := range vs {
				h.Metadata = append(h.Metadata, k, v)
			}
		}
	}
	h.Metadata = append(h.Metadata, extra...)
	var startErr error
	err = c.out.Send(func(b []byte) []byte {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.err != nil {
			startErr = notProcessed(c.err) // nothing of it was written
			return b
		}
		ref, bound := c.refs[method]
		if !bound {
			ref = uint32(len(c.refs) + 1)
			c.refs[method] = ref
			h.MethodName = method
		}
		h.MethodRef = ref
		c.nextID++
		id = c.nextID
		reads = c.claimRole(id, p.stream == nil)
		c.pending[id] = p
		return wire.AppendRequest(b, id, &h, msg, c.threshold)
	})
	if startErr != nil {
		return 0, false, startErr
	}
	if err != nil {
		// A failed Writer takes no more calls. If it had failed before,
		// fn did not run: nothing of this call was written.
		c.endOnce.Do(func() { close(c.ended) })
		if id == 0 {
			return 0, false, notProcessed(c.closedErr(err))
		}
	}
	if reads {
		reads = c.takeReserved(id)
	}
	// A write that failed after the call was registered closed the
	// sending side: the reader ends the call when the server's side ends,
	// as it does the calls queued behind another caller's failed write.
	return id, reads, nil
}

// hasKey reports whether the pairs kv (key, value, ...) have key k.
func hasKey(kv []string, k string) bool {
	for i := 0; i < len(kv); i += 2 {
		if kv[i] == k {
			return true
		}
	}
	return false
}

// closedErr returns the error that ended the connection, or err.
func (c *Conn) closedErr(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return status.Errorf(codes.Unavailable, "tcpconn: %v", err)
}

// take removes and returns the pending call id, or nil.
func (c *Conn) take(id uint32) *pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[id]
	delete(c.pending, id)
	return p
}

// Invoke performs a unary call. It implements grpc.ClientConnInterface;
// grpc.CallOptions are passed to the interceptors and otherwise ignored.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if c.obs.unary != nil {
		return c.obs.unary(ctx, method, args, reply, nil, opts...)
	}
	if c.obs.tracer != nil {
		return c.tracedInvoke(ctx, method, args, reply, nil)
	}
	return c.invoke(ctx, method, args, reply, nil)
}

// tracedInvoke performs a unary call in a client span, when the Conn
// traces.
func (c *Conn) tracedInvoke(ctx context.Context, method string, args, reply any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
	ctx, span, md := c.obs.startSpan(ctx, method)
	peer(span, c)
	err := c.invoke(ctx, method, args, reply, md)
	c.obs.endSpan(span, err)
	return err
}

// invoke performs a unary call, sending md (key, value, ...) besides the
// metadata of ctx.
func (c *Conn) invoke(ctx context.Context, method string, args, reply any, md []string) error {
	req, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "tcpconn: request type %T is not a proto.Message", args)
	}
	rep, ok := reply.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "tcpconn: reply type %T is not a proto.Message", reply)
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	buf := msgPool.Get().(*[]byte)
	defer msgPool.Put(buf)
	msg, err := c.marshalAppend((*buf)[:0], req)
	if err != nil {
		return status.Errorf(codes.Internal, "tcpconn: marshal request: %v", err)
	}
	*buf = msg
	if err := c.checkSend(len(msg)); err != nil {
		return err
	}
	p := pendingPool.Get().(*pending)
	p.reply = rep
	id, reads, err := c.start(ctx, method, msg, p, md)
	if err != nil {
		p.reply = nil
		pendingPool.Put(p)
		return err
	}
	if reads {
		c.readOwn(ctx, id, p)
	}
	if done := ctx.Done(); done == nil {
		<-p.done // a context that never ends: no select needed
	} else {
		select {
		case <-p.done:
		case <-done:
			if c.take(id) != nil { // still pending: abandon it
				c.cancel(id)
				return status.FromContextError(ctx.Err()).Err()
			}
			<-p.done // the reader is completing it
		}
	}
	err = p.err
	p.reply, p.err = nil, nil
	pendingPool.Put(p)
	return err
}

// checkSend fails a message of n bytes that the server announced (SETTINGS
// MAX_MESSAGE_SIZE) it would refuse, before anything is sent, with
// RESOURCE_EXHAUSTED as grpc-go does. Sending it would cost the call
// anyway, and a frame over the server's MAX_FRAME_SIZE would cost every
// call on the connection.
func (c *Conn) checkSend(n int) error {
	if limit := int(c.settings.MaxMessageSize); limit > 0 && n > limit {
		return status.Errorf(codes.ResourceExhausted, "tcpconn: a %d-byte message is over the server's limit of %d bytes", n, limit)
	}
	return nil
}

var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// cancel sends CANCEL for call id.
func (c *Conn) cancel(id uint32) {
	_ = c.out.Send(func(b []byte) []byte { return wire.AppendFrame(b, wire.KindCancel, 0, id, nil) })
}

// read is the reader goroutine: it completes calls as answers arrive,
// while it holds the reading role (role.go).
func (c *Conn) read() {
	defer close(c.readerOut)
	var retake *time.Timer
	for {
		if !c.readBurst() {
			return
		}
		// The role is free: a caller alone on the connection reads its
		// own answer. Take it back when handed it or after readerRetake.
		for claimed := false; !claimed; claimed = c.claimReader() {
			if retake == nil {
				retake = time.NewTimer(c.retake)
			} else {
				retake.Reset(c.retake)
			}
			select {
			case <-c.readerWake:
			case <-retake.C:
			}
		}
		if c.failed.Load() { // failed while another read: nothing more to dispatch
			return
		}
	}
}

// readBurst reads and dispatches frames until, after one at least,
// nothing is buffered and nothing is pending; then it gives the reading
// role up and returns true. It returns false when the connection has ended.
func (c *Conn) readBurst() bool {
	corked, dispatched := false, false
	defer func() {
		if dispatched {
			readers.Add(-1)
		}
	}()
	var answered int   // unary calls the burst answered
	var firstID uint32 // the first id a request sent during the burst gets
	var read int       // frames dispatched since the buffer last ran dry
	streamed := false  // … of which one carried a stream's message
	for {
		if corked && !c.rd.HasFrame() {
			if answered > 1 {
				c.awaitCallers(firstID, answered)
			}
			_ = c.out.Uncork()
			corked = false
		}
		if dispatched && !c.rd.HasFrame() && c.releaseReader() {
			return true
		}
		if c.rd.Buffered() == 0 {
			if read > 1 && !streamed { // several answers: more are coming soon
				c.poller.Poll(c.sock, c.opts.BusyPoll, &readers)
			}
			read, streamed = 0, false
		}
		f, err := c.rd.ReadFrame()
		if err != nil {
			c.fail(status.Errorf(codes.Unavailable, "tcpconn: connection lost: %v", err))
			return false
		}
		read++
		streamed = streamed || f.Kind == wire.KindMessage
		if !corked && c.rd.HasFrame() {
			// A burst of answers: the requests their callers send next
			// are queued and leave in one write after it (awaitCallers).
			c.out.Cork()
			corked, answered = true, 0
			c.mu.Lock()
			firstID = c.nextID + 1
			c.mu.Unlock()
		}
		if f.Kind == wire.KindResponse || f.Kind == wire.KindStatus {
			answered++
		}
		if !dispatched {
			readers.Add(1) // busy from its first frame on (busypoll)
		}
		dispatched = true
		if err := c.dispatch(f); err != nil {
			c.fail(err)
			return false
		}
	}
}

// readers counts the busy readers, process-wide: reader goroutines that
// have dispatched a frame since they took the reading role (readBurst),
// not those waiting on a quiet connection. A reader polls only while there
// are few (busypoll.Poller.Poll).
var readers atomic.Int32

// maxCallerYields bounds how often the reader yields to the callers a burst
// of answers woke (awaitCallers).
const maxCallerYields = 4

// awaitCallers yields the processor to the callers that a burst of answers
// woke, until as many requests as the burst answered were sent since id
// firstID or maxCallerYields passed, so a closed loop of callers sends its
// next calls in one write instead of one write each. The Writer is corked
// meanwhile; the caller uncorks after.
func (c *Conn) awaitCallers(firstID uint32, answered int) {
	for range maxCallerYields {
		runtime.Gosched()
		c.mu.Lock()
		sent := int(c.nextID + 1 - firstID)
		c.mu.Unlock()
		if sent >= answered {
			return
		}
	}
}

// dispatch handles one frame from the server, first marking it heard for
// keepalive.
func (c *Conn) dispatch(f wire.Frame) error {
	if !c.heard.Load() { // a load, not a store per frame: the line stays shared
		c.heard.Store(true)
	}
	switch f.Kind {
	case wire.KindResponse:
		p := c.take(f.ID)
		if p == nil {
			return nil // abandoned by its caller
		}
		if p.stream != nil {
			p.finish(status.Errorf(codes.Internal, "tcpconn: RESPONSE frame on streaming call %d", f.ID))
			return nil
		}
		msg, err := wire.DecodeMessage(nil, f.Payload, f.Flags, c.opts.MaxMessageSize)
		if err == nil {
			err = c.unmarshal(msg, p.reply)
		}
		if err != nil {
			err = status.Errorf(codes.Internal, "tcpconn: decoding response: %v", err)
		}
		p.finish(err)
	case wire.KindStatus:
		st, err := wire.ParseStatus(f.Payload)
		if err != nil {
			return status.Errorf(codes.Internal, "tcpconn: %v", err)
		}
		if p := c.take(f.ID); p != nil {
			if st.GetCode() == 0 && p.stream == nil {
				p.finish(status.Error(codes.Internal, "tcpconn: unary call ended with OK status and no response"))
			} else {
				p.finish(status.ErrorProto(st))
			}
		}
	case wire.KindMessage:
		c.mu.Lock()
		p := c.pending[f.ID]
		c.mu.Unlock()
		if p == nil || p.stream == nil {
			return nil
		}
		msg, err := wire.DecodeMessage(nil, f.Payload, f.Flags, c.opts.MaxMessageSize)
		if err != nil {
			if c.take(f.ID) != nil {
				c.cancel(f.ID)
				p.finish(status.Errorf(codes.Internal, "tcpconn: decoding message: %v", err))
			}
			return nil
		}
		p.stream.push(msg) // copies: the frame's bytes are reused
	case wire.KindPing:
		_ = c.out.Send(func(b []byte) []byte { return wire.AppendFrame(b, wire.KindPong, 0, 0, f.Payload) })
	case wire.KindPong, wire.KindSettings:
		if f.Kind == wire.KindSettings {
			if s, err := wire.ParseSettings(f.Payload); err == nil {
				c.mu.Lock()
				c.settings = s
				c.mu.Unlock()
			}
		}
	case wire.KindGoAway:
		last, st, err := wire.ParseGoAway(f.Payload)
		if err != nil {
			return status.Errorf(codes.Internal, "tcpconn: %v", err)
		}
		c.handleGoAway(last, st.GetCode(), st.GetMessage())
	default:
		return status.Errorf(codes.Internal, "tcpconn: unexpected %s frame from the server", f.Kind)
	}
	return nil
}

// handleGoAway fails new calls and the calls above last; the others are
// still answered before the server closes.
func (c *Conn) handleGoAway(last uint32, code int32, msg string) {
	reason := fmt.Sprintf("tcpconn: server sent GOAWAY (%s: %s)", codes.Code(code), msg)
	c.mu.Lock()
	c.goAway = true
	if c.err == nil {
		c.err = status.Error(codes.Unavailable, reason)
	}
	var lost []*pending
	for id, p := range c.pending {
		if id > last {
			lost = append(lost, p)
			delete(c.pending, id)
		}
	}
	c.mu.Unlock()
	c.endOnce.Do(func() { close(c.ended) })
	for _, p := range lost {
		p.finish(notProcessed(status.Error(codes.Unavailable, reason)))
	}
}

// notProcessedError is a call the server never processed.
type notProcessedError struct{ st *status.Status }

func notProcessed(err error) error { return &notProcessedError{status.Convert(err)} }

func (e *notProcessedError) Error() string {
	return e.st.Message() + " (call not processed; safe to retry)"
}
func (e *notProcessedError) GRPCStatus() *status.Status { return e.st }
func (e *notProcessedError) Is(target error) bool       { return target == ErrNotProcessed }

// kickFlusher makes sure queued stream messages are written soon, by the
// connection's flusher goroutine (started on first use): the time it takes
// to wake is the window in which a pipelining sender's messages gather.
func (c *Conn) kickFlusher() {
	c.flusher.Do(func() { go c.flush() })
	if c.kicked.CompareAndSwap(false, true) {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// flush is the flusher goroutine.
func (c *Conn) flush() {
	for {
		select {
		case <-c.kick:
			// Cleared before the flush: a message queued after the flush
			// has taken the buffer kicks again.
			c.kicked.Store(false)
			_ = c.out.Flush()
		case <-c.readerOut:
			return
		}
	}
}

// keepalive pings when nothing has been heard for every, and closes the
// connection when nothing at all is heard for KeepaliveTimeout after a
// ping. The reader only sets c.heard on each frame; this goroutine looks at
// it on a tick of half the shorter of the two durations, so a busy
// connection costs it no wake-up per frame. A ping leaves after every to
// 1.5×every of silence.
func (c *Conn) keepalive(every time.Duration) {
	tick := max(min(every, c.opts.KeepaliveTimeout)/2, time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var quiet time.Duration // since something was last heard, on ticks
	pinged := false
	for {
		select {
		case <-c.readerOut:
			return
		case <-t.C:
		}
		if c.heard.Swap(false) {
			quiet, pinged = 0, false
			continue
		}
		quiet += tick
		switch {
		case !pinged && quiet >= every:
			err := c.out.Send(func(b []byte) []byte {
				return wire.AppendFrame(b, wire.KindPing, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, 0})
			})
			if err != nil {
				return
			}
			pinged, quiet = true, 0
		case pinged && quiet >= c.opts.KeepaliveTimeout:
			c.fail(status.Errorf(codes.Unavailable, "tcpconn: no answer to keepalive ping within %v", c.opts.KeepaliveTimeout))
			return
		}
	}
}

// unmarshal decodes a message with the Conn's codec.
func (c *Conn) unmarshal(b []byte, m proto.Message) error {
	if c.opts.Codec != nil {
		return c.opts.Codec.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}

// marshalAppend appends a message's encoding with the Conn's codec.
func (c *Conn) marshalAppend(b []byte, m proto.Message) ([]byte, error) {
	if c.opts.Codec != nil {
		return c.opts.Codec.MarshalAppend(b, m)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}
