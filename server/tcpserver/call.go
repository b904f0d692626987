package tcpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/internal/wire"
)

// call is one accepted call, and its handler's context (callctx.go).
type call struct {
	c      *conn
	id     uint32
	m      *method
	msg    []byte        // unary: the request message, owned by the call
	stream *serverStream // streaming calls only
	inline [64]byte      // storage for small request messages

	parent      context.Context // the connection's, or it with metadata
	deadline    time.Time
	hasDeadline bool
	ctxMu       sync.Mutex
	done        chan struct{} // made on the first Done
	err         error         // why the context ended
	stopParent  func() bool   // made on the first Done
	timer       *time.Timer   // made on the first Done, with a deadline
}

// request accepts a REQUEST frame: it checks the id, resolves the method,
// and starts the call, or answers it at once with a STATUS if it is bad.
func (c *conn) request(f wire.Frame) error {
	if f.ID == 0 || f.ID <= c.last {
		return &connError{codes.InvalidArgument, fmt.Sprintf("REQUEST id %d is not above the last id %d", f.ID, c.last)}
	}
	c.mu.Lock()
	// At MaxConcurrentCalls unanswered calls the reader waits here, reading
	// nothing more: the connection's backpressure.
	for c.open >= c.srv.opts.MaxConcurrentCalls {
		c.answered.Wait()
	}
	if c.draining {
		c.mu.Unlock()
		return nil // not accepted: the client learns from GOAWAY's last id that it may retry
	}
	c.last = f.ID // read under c.mu by goAway
	c.open++
	c.mu.Unlock()
	c.active.Add(1)
	cl := &call{c: c, id: f.ID}
	msg, err := wire.ParseRequestHeader(f.Flags, f.Payload, &c.hdr)
	if err != nil {
		cl.fail(codes.InvalidArgument, err.Error())
		return nil
	}
	m, err := c.resolve(&c.hdr)
	if err != nil {
		if errors.Is(err, errTooManyRefs) {
			cl.fail(codes.ResourceExhausted, err.Error())
			return &connError{codes.ResourceExhausted, err.Error()}
		}
		code := codes.InvalidArgument
		if errors.Is(err, errUnknownMethod) {
			code = codes.Unimplemented
		}
		cl.fail(code, err.Error())
		return nil
	}
	cl.m = m
	if m.stream != nil && len(msg) > 0 {
		cl.fail(codes.InvalidArgument, "a streaming REQUEST must not carry a message")
		return nil
	}
	if m.unary != nil {
		decode := c.decode
		if m.inline { // runs before the next ReadFrame: the frame's bytes may be used in place
			decode = c.decodeInPlace
		}
		if cl.msg, err = decode(cl.inline[:0], msg, f.Flags); err != nil {
			cl.failErr(err)
			return nil
		}
	}
	cl.parent = c.ctx
	if c.hdr.HasTimeout {
		if c.hdr.Timeout <= 0 {
			cl.fail(codes.DeadlineExceeded, "deadline budget of 0 already expired")
			return nil
		}
		cl.deadline, cl.hasDeadline = time.Now().Add(c.hdr.Timeout), true
	}
	if len(c.hdr.Metadata) > 0 {
		md := make(metadata.MD, len(c.hdr.Metadata)/2)
		for i := 0; i+1 < len(c.hdr.Metadata); i += 2 {
			md.Append(c.hdr.Metadata[i], c.hdr.Metadata[i+1])
		}
		cl.parent = metadata.NewIncomingContext(cl.parent, md)
	}
	switch {
	case m.stream != nil:
		cl.stream = &serverStream{call: cl, recv: make(chan []byte, StreamBuffer)}
		c.track(cl)
		go cl.runStream()
	case m.inline:
		cl.runInline()
	default:
		c.track(cl)
		go cl.runUnary()
	}
	return nil
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

var (
	errUnknownMethod = errors.New("unknown method")
	errTooManyRefs   = fmt.Errorf("more than %d method refs bound on one connection", MaxMethodRefs)
)

// resolve returns the method a request header names, binding its ref first
// if the header carries a name.
func (c *conn) resolve(h *wire.RequestHeader) (*method, error) {
	bound := c.bound(h.MethodRef)
	if h.MethodName == "" {
		if bound != nil {
			return bound, nil
		}
		return nil, fmt.Errorf("method ref %d is not bound on this connection", h.MethodRef)
	}
	m := c.srv.methods[h.MethodName]
	if m == nil {
		return nil, fmt.Errorf("%w %s", errUnknownMethod, h.MethodName)
	}
	if bound != nil {
		if bound != m {
			return nil, fmt.Errorf("method ref %d is already bound to %s", h.MethodRef, bound.name)
		}
		return m, nil
	}
	if len(c.refs) >= MaxMethodRefs {
		return nil, errTooManyRefs
	}
	c.refs = append(c.refs, methodRef{h.MethodRef, m})
	return m, nil
}

// methodRef is a connection's binding of a ref to a method.
type methodRef struct {
	ref uint32
	m   *method
}

// bound returns the method bound to ref, or nil. Connections bind a few
// refs, so a slice beats a map in time and in idle memory.
func (c *conn) bound(ref uint32) *method {
	for _, b := range c.refs {
		if b.ref == ref {
			return b.m
		}
	}
	return nil
}

// decode returns a frame's message in storage the caller owns: dst's if it
// fits, else new memory. The frame's own bytes are reused by the reader.
func (c *conn) decode(dst, payload []byte, flags wire.Flags) ([]byte, error) {
	msg, err := wire.DecodeMessage(dst, payload, flags, c.srv.opts.MaxMessageSize)
	if err != nil || flags&wire.FlagCompressed != 0 {
		return msg, err
	}
	return append(dst, msg...), nil
}

// decodeInPlace returns a frame's message, decompressed into dst's storage
// if compressed and otherwise the frame's own bytes, valid until the next
// ReadFrame.
func (c *conn) decodeInPlace(dst, payload []byte, flags wire.Flags) ([]byte, error) {
	return wire.DecodeMessage(dst, payload, flags, c.srv.opts.MaxMessageSize)
}

// runUnary runs a unary call's handler in the call's own goroutine and
// answers it.
func (cl *call) runUnary() {
	cl.respond(cl.m.unary.Handler(cl.m.impl, cl, cl.decodeRequest, cl.c.srv.unary))
}

// runInline runs a unary call's handler on the connection's goroutine, for
// methods registered as inline: no goroutine, no per-call closures. The
// request decoder and the interceptor chain are the connection's, built
// once, and valid because inline calls run one at a time.
func (cl *call) runInline() {
	c := cl.c
	c.inlineCall = cl
	icpt := c.srv.unary
	if icpt != nil {
		icpt = c.inlineChain
	}
	cl.respond(cl.m.unary.Handler(cl.m.impl, cl, c.inlineDecode, icpt))
	c.inlineCall = nil
}

// respond answers a unary call with the handler's result.
func (cl *call) respond(resp any, err error) {
	if err != nil {
		cl.failErr(err)
		return
	}
	msg, ok := resp.(proto.Message)
	if !ok {
		cl.fail(codes.Internal, fmt.Sprintf("handler returned %T, not a proto.Message", resp))
		return
	}
	if err := cl.c.out.SendMessage(wire.KindResponse, cl.id, msg, cl.c.srv.opts.CompressThreshold, false); err != nil {
		cl.fail(codes.Internal, "encoding response: "+err.Error())
		return
	}
	cl.c.finish(cl)
}

// decodeRequest unmarshals the call's request message into v.
func (cl *call) decodeRequest(v any) error { return unmarshalRequest(cl.msg, v) }

// unmarshalRequest unmarshals a request message into v.
func unmarshalRequest(msg []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request type %T is not a proto.Message", v)
	}
	if err := proto.Unmarshal(msg, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "invalid request message: %v", err)
	}
	return nil
}

// failErr ends the call with err's status.
func (cl *call) failErr(err error) { cl.end(statusOf(err).Proto()) }

// fail ends the call with a status of code and msg.
func (cl *call) fail(code codes.Code, msg string) { cl.end(statusProto(code, msg)) }

// end sends the call's final STATUS and forgets it.
func (cl *call) end(st *spb.Status) {
	cl.c.out.Send(func(b []byte) []byte { return wire.AppendStatusFrame(b, cl.id, st) })
	cl.c.finish(cl)
}

// runStream runs a streaming call's handler and ends the call with its
// status.
func (cl *call) runStream() {
	m := cl.m
	var err error
	if icpt := cl.c.srv.stream; icpt != nil {
		err = icpt(m.impl, cl.stream, &m.sinfo, m.stream.Handler)
	} else {
		err = m.stream.Handler(m.impl, cl.stream)
	}
	if err != nil {
		cl.failErr(err)
		return
	}
	cl.end(&spb.Status{})
}

// serverStream is the grpc.ServerStream of a streaming call.
type serverStream struct {
	call *call
	recv chan []byte // received messages; nil marks the client's half-close
	eof  bool
	bad  error // a received message that could not be decoded; set before the call is cancelled
}

var _ grpc.ServerStream = (*serverStream)(nil)

// deliver hands a MESSAGE or HALF_CLOSE frame to the stream, waiting while
// its buffer is full unless the call ends.
func (s *serverStream) deliver(c *conn, f wire.Frame) error {
	var msg []byte
	if f.Kind == wire.KindMessage {
		var err error
		if msg, err = c.decode(nil, f.Payload, f.Flags); err != nil {
			s.bad = err
			s.call.cancel()
			return nil
		}
		if msg == nil {
			msg = []byte{}
		}
	}
	select {
	case s.recv <- msg:
	case <-s.call.Done():
	}
	return nil
}

// Context returns the call's context.
func (s *serverStream) Context() context.Context { return s.call }

// SendMsg sends m as a MESSAGE frame.
func (s *serverStream) SendMsg(m any) error {
	if err := s.call.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "message type %T is not a proto.Message", m)
	}
	// While more received messages wait for the handler, its answer can
	// wait to share a write with theirs; the answer to the last one goes out
	// at once.
	more := len(s.recv) > 0
	return s.call.c.out.SendMessage(wire.KindMessage, s.call.id, msg, s.call.c.srv.opts.CompressThreshold, more)
}

// RecvMsg receives the next message into m, or io.EOF after the client's
// half-close.
func (s *serverStream) RecvMsg(m any) error {
	if s.eof {
		return io.EOF
	}
	select {
	case b := <-s.recv:
		if b == nil {
			s.eof = true
			return io.EOF
		}
		msg, ok := m.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "message type %T is not a proto.Message", m)
		}
		if err := proto.Unmarshal(b, msg); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid stream message: %v", err)
		}
		return nil
	case <-s.call.Done():
		if s.bad != nil {
			return statusOf(s.bad).Err()
		}
		return status.FromContextError(s.call.Err()).Err()
	}
}

// SetHeader is accepted and ignored: protocol v1 carries no response
// metadata.
func (s *serverStream) SetHeader(metadata.MD) error { return nil }

// SendHeader is accepted and ignored, like SetHeader.
func (s *serverStream) SendHeader(metadata.MD) error { return nil }

// SetTrailer is ignored, like SetHeader.
func (s *serverStream) SetTrailer(metadata.MD) {}
