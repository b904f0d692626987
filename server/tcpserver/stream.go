package tcpserver

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/internal/wire"
)

// serverStream is the grpc.ServerStream of a streaming call.
type serverStream struct {
	call *call
	recv chan []byte // received messages; nil marks the client's half-close
	// halfClosed is set before the half-close's nil is queued, so that
	// SendMsg never waits for more messages that will not come.
	halfClosed atomic.Bool
	eof        bool
	bad        error // a received message that could not be decoded; set before the call is cancelled

	// An inline stream's handler runs on its connection's goroutine and
	// reads the connection itself when it needs a message (recvInline);
	// dispatch hands it each message in place, valid until the next frame
	// is read. Owned by the connection's goroutine.
	inline  bool
	readErr error    // why reading stopped, for an inline stream
	next    []byte   // the message dispatch handed over, if has
	has     bool     //
	backlog [][]byte // copies of messages handed over while one was waiting (not in normal use)
	buf     []byte   // decompression storage
}

var _ grpc.ServerStream = (*serverStream)(nil)

func newServerStream(cl *call) *serverStream {
	return &serverStream{call: cl, recv: make(chan []byte, StreamBuffer)}
}

// deliver hands a MESSAGE or HALF_CLOSE frame to the stream, waiting while
// its buffer is full unless the call ends.
func (s *serverStream) deliver(f wire.Frame) {
	if s.inline {
		s.deliverInline(f)
		return
	}
	var msg []byte
	if f.Kind != wire.KindMessage {
		s.halfClosed.Store(true)
	} else {
		var err error
		if msg, err = s.call.c.decode(nil, f.Payload, f.Flags); err != nil {
			s.bad = err
			s.call.cancel()
			return
		}
		if msg == nil {
			msg = []byte{}
		}
	}
	select {
	case s.recv <- msg:
	case <-s.call.Done():
	}
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
	// The half-close's nil is not a message: with nothing else queued the
	// answer goes out now (a server-streaming handler never reads again).
	// An inline stream's answers wait in the connection's corked writer:
	// they leave with the burst's, or when its handler next waits for input.
	n := len(s.recv)
	more := s.inline || n > 0 && !(n == 1 && s.halfClosed.Load())
	return s.call.c.out.SendMessage(wire.KindMessage, s.call.id, msg, s.call.c.srv.opts.CompressThreshold, more)
}

// RecvMsg receives the next message into m, or io.EOF after the client's
// half-close.
func (s *serverStream) RecvMsg(m any) error {
	if s.inline {
		return s.recvInline(m)
	}
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
		if err := s.call.c.srv.unmarshal(b, msg); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid stream message: %v", err)
		}
		return nil
	case <-s.call.Done():
		if s.bad != nil {
			return status.ErrorProto(statusOf(s.bad))
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

// deliverInline hands an inline stream a MESSAGE (in place) or its
// HALF_CLOSE. Its handler takes each before the next frame is read, so a
// second message while one waits would only come from a handler that
// reads no more: it is kept as a copy all the same.
func (s *serverStream) deliverInline(f wire.Frame) {
	if f.Kind != wire.KindMessage {
		s.halfClosed.Store(true)
		return
	}
	queue := s.has || len(s.backlog) > 0 // next, if any, is older than the backlog
	var dst []byte
	if !queue {
		dst = s.buf[:0]
	}
	msg, err := wire.DecodeMessage(dst, f.Payload, f.Flags, s.call.c.srv.opts.MaxMessageSize)
	if err != nil {
		s.bad = err
		s.call.cancel()
		return
	}
	if queue {
		s.backlog = append(s.backlog, append([]byte{}, msg...))
		return
	}
	if f.Flags&wire.FlagCompressed != 0 {
		s.buf = msg[:0]
	}
	s.next, s.has = msg, true
}

// recvInline is RecvMsg for an inline stream: while no message is waiting
// it serves the connection's next frame, whichever call it is for.
func (s *serverStream) recvInline(m any) error {
	c := s.call.c
	for {
		var b []byte
		got := true
		switch {
		case s.has:
			b, s.next, s.has = s.next, nil, false
		case len(s.backlog) > 0:
			b, s.backlog = s.backlog[0], s.backlog[1:]
		case s.halfClosed.Load():
			s.eof = true
			return io.EOF
		default:
			got = false
		}
		if got {
			msg, ok := m.(proto.Message)
			if !ok {
				return status.Errorf(codes.Internal, "message type %T is not a proto.Message", m)
			}
			if err := s.call.c.srv.unmarshal(b, msg); err != nil {
				return status.Errorf(codes.InvalidArgument, "invalid stream message: %v", err)
			}
			return nil
		}
		if err := s.call.Err(); err != nil {
			if s.bad != nil {
				return status.ErrorProto(statusOf(s.bad))
			}
			return status.FromContextError(err).Err()
		}
		if s.readErr != nil {
			return status.FromContextError(context.Canceled).Err()
		}
		if err := c.serveFrame(false); err != nil && !errors.Is(err, errWoken) {
			s.readErr = err // the connection ends once the handler has returned
			s.call.cancel()
		}
	}
}
