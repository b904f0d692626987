package tcpconn

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The reading role: one goroutine at a time reads the connection. Usually
// it is the reader goroutine, which completes each call by waking its
// caller. A unary caller that is alone on the connection, with nothing else
// pending, reads its answer itself instead (leader/followers, with the
// caller as the leader), which saves the hand-off from the reader to the
// caller: one goroutine wake-up and, on a multi-core machine, the second
// thread the runtime wakes to look for the woken goroutine. That is most of
// a round trip's client-side cost at one call in flight.
//
// The reader gives the role up when it has dispatched everything buffered
// and nothing is pending, and takes it back when a caller hands it back
// with calls still pending (wakeReader), or when it has been free for
// readerRetake (a connection with no calls must still read the server's
// PING, GOAWAY and end).
//
// A caller only reserves the role until its request is written: a write
// can block for as long as the server does not read, and a server may be
// blocked writing to us, so the reader takes a reserved role after
// readerRetake and reads meanwhile. Callers read only on connections with
// read deadlines, which is how a caller's read is cut short when its
// context ends; a failed connection dispatches nothing more.
const (
	roleFree     = iota // nobody reads
	roleReader          // the reader goroutine reads
	roleCaller          // a unary caller reads its own answer
	roleReserved        // a unary caller will read once its request is written
)

// readerRetake is how long the reading role may stay free before the
// reader goroutine takes it back. Between two calls of a caller alone on
// the connection the role is free for microseconds; the reader wakes this
// often to notice a connection whose caller went away. A Conn copies it
// when it starts (tests lengthen it).
var readerRetake = 10 * time.Millisecond

// callerReads lets a caller alone on a connection read its own answer;
// BenchmarkUnaryAlone turns it off, leaving the reader goroutine to read
// everything, to measure the hand-off it saves.
var callerReads = true

// claimRole decides who reads the answer to call id, about to be
// registered: its caller, if it is a unary call (unary), nobody reads and
// nothing else is pending; otherwise the reader, which is woken if nobody
// reads (a stream, or a call joining an abandoned one, must not wait for
// readerRetake). It reports whether the caller reads. c.mu is held.
func (c *Conn) claimRole(id uint32, unary bool) bool {
	if c.role != roleFree {
		return false
	}
	if unary && c.callerReads && len(c.pending) == 0 {
		// Reserved until the request is written (takeReserved): a caller
		// blocked writing does not hold the role; the reader may take it.
		c.role, c.reading = roleReserved, id
		return true
	}
	c.wakeReader()
	return false
}

// takeReserved turns call id's reservation into the reading role, once its
// request is written, unless the reader took the role meanwhile.
func (c *Conn) takeReserved(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.role != roleReserved || c.reading != id {
		return false
	}
	c.role = roleCaller
	return true
}

// releaseReader gives the reading role up, from the reader goroutine, if
// nothing is pending: a caller alone on the connection then reads its own
// answer.
func (c *Conn) releaseReader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) != 0 || c.err != nil || !c.callerReads {
		return false
	}
	c.role = roleFree
	return true
}

// claimReader takes the reading role for the reader goroutine if it is
// free.
func (c *Conn) claimReader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.role != roleFree && c.role != roleReserved {
		return false
	}
	c.role, c.reading = roleReader, 0
	return true
}

// wakeReader wakes the reader goroutine to take the role back.
func (c *Conn) wakeReader() {
	select {
	case c.readerWake <- struct{}{}:
	default:
	}
}

// releaseCaller gives the reading role up from a caller, and wakes the
// reader if calls are pending (they wait for it) or the connection failed
// (the reader ends it).
func (c *Conn) releaseCaller() {
	c.mu.Lock()
	c.role, c.reading = roleFree, 0
	wake := len(c.pending) != 0 || c.err != nil
	c.mu.Unlock()
	if wake {
		c.wakeReader()
	}
}

// interrupt cuts short the read of the caller of call id, whose context
// ended, with a read deadline in the past.
func (c *Conn) interrupt(id uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.role == roleCaller && c.reading == id {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// readOwn reads the connection, dispatching every frame, until call id's
// answer has come (p.done is then ready), ctx ends, or the next frame is
// larger than the read buffer (only a blocking read can finish it, so it is
// left to the reader goroutine); then it gives the reading role up. The
// caller waits on p.done and ctx.Done after it as it would have for the
// reader.
func (c *Conn) readOwn(ctx context.Context, id uint32, p *pending) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { c.interrupt(id) })
	}
	c.readUntil(ctx, p)
	if stop != nil && !stop() {
		// interrupt may have run: none can once c.reading is not id.
		c.mu.Lock()
		c.reading = 0
		c.mu.Unlock()
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.releaseCaller()
}

// readUntil is readOwn's loop.
func (c *Conn) readUntil(ctx context.Context, p *pending) {
	for {
		for !c.rd.HasFrame() {
			before := c.rd.Buffered()
			if err := c.rd.Fill(); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && ctx.Err() != nil {
					return // interrupted; the Reader is as it was
				}
				c.fail(status.Errorf(codes.Unavailable, "tcpconn: connection lost: %v", err))
				return
			}
			if c.rd.Buffered() == before {
				return // a frame larger than the buffer
			}
		}
		f, err := c.rd.ReadFrame() // buffered: does not read the socket
		if err != nil {
			c.fail(status.Errorf(codes.Unavailable, "tcpconn: connection lost: %v", err))
			return
		}
		if err := c.dispatch(f); err != nil {
			c.fail(err)
			return
		}
		if len(p.done) != 0 && !c.rd.HasFrame() {
			return
		}
	}
}
