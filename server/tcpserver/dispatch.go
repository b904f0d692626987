package tcpserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/calcrpc/calc/internal/wire"
)

// The dispatch stage: each frame the reader reads is handled here, in
// order, on the connection's goroutine.

// dispatch handles one frame.
func (c *conn) dispatch(f wire.Frame) error {
	switch f.Kind {
	case wire.KindRequest:
		return c.request(f)
	case wire.KindMessage, wire.KindHalfClose:
		if cl := c.lookup(f.ID); cl != nil && cl.stream != nil {
			cl.stream.deliver(f)
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

// request accepts a REQUEST frame and starts its call, or answers it at
// once with a STATUS when it is bad or refused.
func (c *conn) request(f wire.Frame) error {
	if f.ID == 0 || f.ID <= c.last {
		return &connError{codes.InvalidArgument, fmt.Sprintf("REQUEST id %d is not above the last id %d", f.ID, c.last)}
	}
	msg, herr := wire.ParseRequestHeader(f.Flags, f.Payload, &c.hdr)
	var m *method
	var merr error
	if herr == nil {
		m, merr = c.resolve(&c.hdr)
		c.hdr.MethodName = "" // bound now: an idle connection does not keep the string
	}
	ok, refusal := c.accept(f.ID, m != nil && m.stream != nil)
	if !ok {
		return nil // draining: not accepted, and safe for the client to retry
	}
	cl := &call{c: c, id: f.ID, m: m, holdsStream: m != nil && m.stream != nil && refusal == nil}
	switch {
	case herr != nil:
		cl.fail(codes.InvalidArgument, herr.Error())
		return nil
	case errors.Is(merr, errTooManyRefs):
		cl.fail(codes.ResourceExhausted, merr.Error())
		return &connError{codes.ResourceExhausted, merr.Error()}
	case errors.Is(merr, errUnknownMethod):
		cl.fail(codes.Unimplemented, merr.Error())
		return nil
	case merr != nil:
		cl.fail(codes.InvalidArgument, merr.Error())
		return nil
	case refusal != nil:
		cl.end(refusal.Proto())
		return nil
	case m.stream != nil && len(msg) > 0:
		cl.fail(codes.InvalidArgument, "a streaming REQUEST must not carry a message")
		return nil
	}
	if m.unary != nil {
		decode := c.decode
		if m.inline { // runs before the next ReadFrame: the frame's bytes may be used in place
			decode = c.decodeInPlace
		}
		var err error
		if cl.msg, err = decode(cl.small[:0], msg, f.Flags); err != nil {
			cl.failErr(err)
			return nil
		}
	}
	cl.parent = c
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
	case m.stream != nil && m.inline && !c.inStream:
		return c.runInlineStream(cl)
	case m.stream != nil:
		cl.stream = newServerStream(cl)
		c.track(cl)
		go cl.runStream()
	case m.inline:
		c.inline.run(cl)
	case c.srv.pool != nil:
		c.track(cl)
		c.srv.pool.submit(cl)
	default:
		c.track(cl)
		go cl.runUnary()
	}
	return nil
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

// runInlineStream runs a stream of an inline method on the connection's
// goroutine: its handler reads the connection itself whenever it waits for
// a message (serverStream.recvInline), so a connection carrying one
// pipelined stream hands nothing to another goroutine. Streams opened
// meanwhile on the connection run in goroutines of their own. It returns
// the read error that ended the stream's reading, if one did.
func (c *conn) runInlineStream(cl *call) error {
	cl.stream = &serverStream{call: cl, inline: true}
	c.track(cl)
	c.inStream = true
	stop := context.AfterFunc(cl, c.wake) // its end must stop a wait for input
	cl.runStream()
	stop()
	c.inStream = false
	c.wakeMu.Lock()
	c.woken = false
	c.wakeMu.Unlock()
	return cl.stream.readErr
}
