package tcpserver

import (
	"errors"
	"io"
	"os"
	"time"

	"google.golang.org/grpc/codes"
)

// The reading stage. A connection's goroutine reads a burst of frames and
// dispatches each, corking the writer so the burst's answers share writes.
// Between bursts it waits in three steps, each cheaper to hold than the
// last:
//
//  1. hot: for hotReadWindow it reads directly, holding its read buffer, so
//     a busy connection pays no readiness check;
//  2. warm: it gives the buffer back and waits for readability, until
//     idleAfter has passed since the burst;
//  3. idle: readFrames returns errIdle, and run hands the connection to
//     the idler (idle.go), which holds it with no goroutine (Linux) and
//     starts a goroutine again when the socket turns readable or its idle
//     timeout passes. That goroutine waits in waitIdle.

// hotReadWindow is how long a connection that just served a burst reads
// directly for the next one before it gives its read buffer back.
const hotReadWindow = time.Millisecond

// idleAfter is how long a connection waits for its next burst before its
// goroutine hands it to the idler.
const idleAfter = 100 * time.Millisecond

// burstFlushFrames is how many frames of a burst the server serves between
// writes of their answers. Answering a long burst in one write would save
// write calls, but a closed-loop client would then wait idle for the whole
// burst, and the server for the client's next one: a write every 16 frames
// lets both work at once (at 64 callers on one connection, about 1.4 times
// the calls per second of one write per burst).
const burstFlushFrames = 16

// errIdle is awaitBurst's signal that the connection has gone idle.
var errIdle = errors.New("tcpserver: connection idle")

// readFrames reads and dispatches frames until an error, or errIdle.
func (c *conn) readFrames() error {
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
			_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.FrameTimeout))
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

// awaitBurst waits for the first bytes of the next burst: hot, then warm,
// then errIdle (see the top of this file). A goroutine that has served
// nothing yet, one the idler started, waits in waitIdle instead.
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
	_ = c.nc.SetReadDeadline(c.idleSince.Add(idleAfter))
	if err := c.awaitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.servedFrames = false
	return errIdle
}

// waitIdle waits, holding no read buffer on a socket, until the connection
// is readable. When the idle timeout passes with no call in flight it sends
// GOAWAY and reports io.EOF.
func (c *conn) waitIdle() error {
	c.rd.Release()
	for {
		var deadline time.Time
		if idle := c.srv.opts.IdleTimeout; idle > 0 {
			deadline = c.idleSince.Add(idle)
		}
		_ = c.nc.SetReadDeadline(deadline)
		err := c.awaitReadable()
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

// awaitReadable waits, until the read deadline set, for the connection's
// next bytes. A socket is waited on without a read buffer (readiness). A
// connection with no readiness wait (a net.Pipe, a TLS connection, any
// platform without one) waits in a read instead, which buffers what it
// gets: were it to return at once, the next frame's first byte would be
// awaited under the frame timeout, and a quiet connection would be cut off
// with DEADLINE_EXCEEDED after FrameTimeout rather than IdleTimeout.
func (c *conn) awaitReadable() error {
	if c.ready.canWait() {
		return c.ready.wait()
	}
	return c.rd.Fill()
}

// connReader is the socket as the connection's wire.Reader sees it: reads
// are counted into the server's bytes received.
type connReader struct{ c *conn }

func (r connReader) Read(p []byte) (int, error) {
	n, err := r.c.nc.Read(p)
	r.c.srv.counters.bytesIn.Add(uint64(n))
	return n, err
}
