package tcpconn

import (
	"context"
	"io"
	"sync"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/internal/rpctrace"
	"github.com/calcrpc/calc/internal/wire"
)

// NewStream opens a streaming call. It implements
// grpc.ClientConnInterface; grpc.CallOptions are passed to the
// interceptors and otherwise ignored. Cancelling ctx cancels the call on
// the server too.
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if c.obs.stream != nil {
		return c.obs.stream(ctx, desc, nil, method, opts...)
	}
	return c.tracedStream(ctx, desc, nil, method)
}

// tracedStream opens a streaming call, in a client span that ends with
// it when the Conn traces.
func (c *Conn) tracedStream(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, span, md := c.obs.startSpan(ctx, method)
	peer(span, c)
	s, err := c.newStream(ctx, method, nil, span, md)
	if err != nil {
		c.obs.endSpan(span, err)
		return nil, err
	}
	return s, nil
}

// newStream opens a streaming call, sending md besides ctx's metadata;
// onEnd, if not nil, runs once when the call ends after it started, and
// span, if not nil, is ended then.
func (c *Conn) newStream(ctx context.Context, method string, onEnd func(), span trace.Span, md []string) (*clientStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	s := &clientStream{c: c, ctx: ctx, ready: make(chan struct{}, 1), onEnd: onEnd, span: span}
	id, _, err := c.start(ctx, method, nil, &pending{stream: s}, md)
	if err != nil {
		return nil, err
	}
	s.id = id
	stop := context.AfterFunc(ctx, func() {
		if c.take(id) != nil {
			c.cancel(id)
			s.end(status.FromContextError(ctx.Err()).Err())
		}
	})
	s.mu.Lock()
	s.stop = stop
	ended := s.err != nil
	s.mu.Unlock()
	if ended {
		stop()
	}
	return s, nil
}

// clientStream is a streaming call. Received messages queue without bound
// (the server's sends are paced by what the client sent), so a client may
// send a whole pipeline before it reads a single answer.
type clientStream struct {
	c   *Conn
	ctx context.Context
	id  uint32

	onEnd func()     // run once when the call ends, or nil
	span  trace.Span // ended when the call ends, or nil

	mu    sync.Mutex
	stop  func() bool // unregisters the context watch
	queue msgQueue    // received, not yet taken by RecvMsg
	err   error       // the call's end: io.EOF for OK, else its status
	// ready is signalled when queue turns non-empty or err is set: a
	// reader that keeps up is woken once per burst, not once per message.
	ready chan struct{}

	// RecvMsg's own, touched by it alone: the messages it took from queue
	// in one go, and the next one to return.
	batch msgQueue
	next  int
}

// msgQueue holds messages back to back in one buffer, so that receiving a
// message costs a copy into it and no allocation.
type msgQueue struct {
	buf  []byte
	ends []int // the end of each message in buf
}

// message returns message i.
func (q *msgQueue) message(i int) []byte {
	start := 0
	if i > 0 {
		start = q.ends[i-1]
	}
	return q.buf[start:q.ends[i]]
}

var _ grpc.ClientStream = (*clientStream)(nil)

// push queues a copy of a received message.
func (s *clientStream) push(msg []byte) {
	s.mu.Lock()
	first := len(s.queue.ends) == 0
	s.queue.buf = append(s.queue.buf, msg...)
	s.queue.ends = append(s.queue.ends, len(s.queue.buf))
	s.mu.Unlock()
	if first {
		s.signal()
	}
}

// end records how the call ended: a nil or OK status error means io.EOF.
func (s *clientStream) end(err error) {
	if status.Code(err) == codes.OK {
		err = io.EOF
	}
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.err = err
	}
	stop := s.stop
	s.mu.Unlock()
	s.signal()
	if stop != nil {
		stop()
	}
	if first && s.onEnd != nil {
		s.onEnd()
	}
	if first && s.span != nil {
		rpctrace.EndClient(s.span, err)
	}
}

func (s *clientStream) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// SendMsg sends m. After the call has ended it returns io.EOF; RecvMsg
// then reports the call's status. A message over the server's
// MAX_MESSAGE_SIZE is not sent: it fails with RESOURCE_EXHAUSTED and the
// stream goes on.
func (s *clientStream) SendMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "tcpconn: message type %T is not a proto.Message", m)
	}
	s.mu.Lock()
	ended := s.err != nil
	s.mu.Unlock()
	if ended {
		return io.EOF
	}
	size := s.c.out.Size(msg)
	if err := s.c.checkSend(size); err != nil {
		return err
	}
	// The message is queued and the connection's flusher writes it: a
	// sender pipelining a stream gets many messages per write.
	if err := s.c.out.SendSized(wire.KindMessage, s.id, msg, size, s.c.threshold, true); err != nil {
		return io.EOF
	}
	s.c.kickFlusher()
	return nil
}

// CloseSend half-closes the stream: the server sees the end of its input.
func (s *clientStream) CloseSend() error {
	_ = s.c.out.Send(func(b []byte) []byte { return wire.AppendFrame(b, wire.KindHalfClose, 0, s.id, nil) })
	return nil
}

// RecvMsg receives the next message into m; at the end of the call it
// returns io.EOF for OK or the call's status error.
func (s *clientStream) RecvMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "tcpconn: message type %T is not a proto.Message", m)
	}
	for {
		if s.next < len(s.batch.ends) {
			b := s.batch.message(s.next)
			s.next++
			if err := s.c.unmarshal(b, msg); err != nil {
				return status.Errorf(codes.Internal, "tcpconn: decoding message: %v", err)
			}
			return nil
		}
		s.mu.Lock()
		if len(s.queue.ends) > 0 {
			// Take every message queued, and give the queue the buffers
			// of the batch just done.
			s.batch, s.queue = s.queue, msgQueue{buf: s.batch.buf[:0], ends: s.batch.ends[:0]}
			s.next = 0
			s.mu.Unlock()
			continue
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return err
		}
		<-s.ready
	}
}

// Header returns no metadata: protocol v1 carries no response headers.
func (s *clientStream) Header() (metadata.MD, error) { return nil, nil }

// Trailer returns no metadata, like Header.
func (s *clientStream) Trailer() metadata.MD { return nil }

// Context returns the call's context.
func (s *clientStream) Context() context.Context { return s.ctx }
