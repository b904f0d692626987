package tcpserver

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/internal/wire"
)

// call is one accepted call, and its handler's context (callctx.go). It is
// answered exactly once, by respond or end, which count it out of its
// connection's in-flight counter.
type call struct {
	c      *conn
	id     uint32
	m      *method       // nil for a call refused before its method was known
	msg    []byte        // unary: the request message, owned by the call
	stream *serverStream // streaming calls only
	// holdsStream: accept counted the call against the stream limits,
	// and end gives the place back, whether or not the stream started.
	holdsStream bool
	small       [64]byte // storage for small request messages

	parent      context.Context // the connection's, or it with metadata
	deadline    time.Time
	hasDeadline bool
	ctxMu       sync.Mutex
	ended       atomic.Bool   // err is set (Err's fast path)
	done        chan struct{} // made on the first Done
	err         error         // why the context ended
	stopParent  func() bool   // made on the first Done
	timer       *time.Timer   // made on the first Done, with a deadline
}

// runUnary runs a unary call's handler in the call's own goroutine and
// answers it.
func (cl *call) runUnary() {
	cl.respond(cl.handleUnary(cl.decodeRequest, cl.c.srv.unary))
}

// handleUnary runs the method's handler (the generated one, which decodes
// the request and runs the interceptors). A panic anywhere in it becomes
// an INTERNAL error, logged once with its stack, whatever interceptors are
// installed: the transport recovers every call itself.
func (cl *call) handleUnary(decode func(any) error, icpt grpc.UnaryServerInterceptor) (resp any, err error) {
	defer cl.recoverHandler(&err)
	return cl.m.unary.Handler(cl.m.impl, cl, decode, icpt)
}

// recoverHandler, deferred around a handler, turns its panic into an
// INTERNAL error in *err.
func (cl *call) recoverHandler(err *error) {
	if r := recover(); r != nil {
		cl.c.srv.logger.Error("panic in handler", "method", cl.m.name, "peer", addrString(cl.c.nc.RemoteAddr()),
			"panic", r, "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "internal error in %s", cl.m.name)
	}
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
func (cl *call) decodeRequest(v any) error { return cl.c.srv.unmarshalRequest(cl.msg, v) }

// unmarshalRequest unmarshals a request message into v.
func (s *Server) unmarshalRequest(msg []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request type %T is not a proto.Message", v)
	}
	if err := s.unmarshal(msg, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "invalid request message: %v", err)
	}
	return nil
}

// failErr ends the call with err's status. A call cut off by the drain's
// deadline or a connection's max age grace answers UNAVAILABLE rather than
// the CANCELLED its handler saw.
func (cl *call) failErr(err error) {
	st := statusOf(err)
	if cause := context.Cause(cl.c); codes.Code(st.GetCode()) == codes.Canceled && (cause == errDrainDeadline || cause == errMaxAgeGrace) {
		st = status.Convert(cause).Proto()
	}
	cl.end(st)
}

// fail ends the call with a status of code and msg.
func (cl *call) fail(code codes.Code, msg string) { cl.end(statusProto(code, msg)) }

// end sends the call's final STATUS and counts it out.
func (cl *call) end(st *spb.Status) {
	if cl.holdsStream {
		cl.c.releaseStream()
	}
	cl.c.out.Send(func(b []byte) []byte { return wire.AppendStatusFrame(b, cl.id, st) })
	cl.c.finish(cl)
}

// runStream runs a streaming call's handler, recovered like a unary one,
// and ends the call with its status.
func (cl *call) runStream() {
	if err := cl.handleStream(); err != nil {
		cl.failErr(err)
		return
	}
	cl.end(&spb.Status{})
}

func (cl *call) handleStream() (err error) {
	defer cl.recoverHandler(&err)
	m := cl.m
	if icpt := cl.c.srv.stream; icpt != nil {
		return icpt(m.impl, cl.stream, &m.sinfo, m.stream.Handler)
	}
	return m.stream.Handler(m.impl, cl.stream)
}

// inlineRunner runs unary calls of inline methods on the connection's
// goroutine, one at a time: no goroutine and no per-call closures. The
// request decoder and the interceptor chain are built once per
// connection, and valid because inline calls never overlap.
type inlineRunner struct {
	c      *conn
	call   *call // the call running, if any
	decode func(any) error
	chain  grpc.UnaryServerInterceptor // runChain, bound once
	next   grpc.UnaryHandler           // chainNext, bound once
	info   *grpc.UnaryServerInfo
	final  grpc.UnaryHandler
	at     int // the next interceptor chainNext runs
}

func (r *inlineRunner) init(c *conn) {
	r.c = c
	r.decode = func(v any) error { return c.srv.unmarshalRequest(r.call.msg, v) }
	r.chain = r.runChain
	r.next = r.chainNext
}

// run runs cl and answers it.
func (r *inlineRunner) run(cl *call) {
	r.call = cl
	icpt := r.c.srv.unary
	if icpt != nil {
		icpt = r.chain
	}
	resp, err := cl.handleUnary(r.decode, icpt)
	r.call, r.info, r.final = nil, nil, nil // an idle connection keeps none of the call's garbage
	cl.respond(resp, err)
}

// runChain runs the server's unary interceptors around an inline call:
// chainNext walks the chain with an index kept here, restored on return
// (and on a panic's unwinding) so an interceptor may call its handler more
// than once.
func (r *inlineRunner) runChain(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r.info, r.final, r.at = info, handler, 0
	return r.chainNext(ctx, req)
}

func (r *inlineRunner) chainNext(ctx context.Context, req any) (any, error) {
	ics := r.c.srv.opts.UnaryInterceptors
	i := r.at
	if i == len(ics) {
		return r.final(ctx, req)
	}
	r.at = i + 1
	defer func() { r.at = i }()
	return ics[i](ctx, req, r.info, r.next)
}
