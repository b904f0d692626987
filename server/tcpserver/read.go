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
//  0. polling: after a burst of several frames, outside an inline stream,
//     it yields its processor and checks its socket for up to
//     Options.BusyPoll, so that a peer with more calls in flight finds it
//     awake (package busypoll). A connection counts as busy for polling
//     (Server.serving) while it serves a burst and in the hot step after
//     it, not in the warm and idle waits;
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
// the calls per second of one write per burst). An inline stream's
// answers leave once per burst instead: a pipelining client has the rest
// of its window in flight meanwhile, and a write every 16 answers cost its
// server about a third of its CPU (BENCHMARKS.md, streaming).
const burstFlushFrames = 16

// errIdle is awaitBurst's signal that the connection has gone idle.
var errIdle = errors.New("tcpserver: connection idle")

// readFrames reads and dispatches frames until an error, or errIdle.
func (c *conn) readFrames() error {
	for {
		if err := c.serveFrame(true); err != nil {
			return err
		}
	}
}

// serveFrame reads one frame, waiting for the next burst first if none is
// buffered, and dispatches it. The burst's answers are corked, and leave
// every burstFlushFrames frames and when the burst is done. With mayIdle
// the wait may end in errIdle (the connection's goroutine then exits);
// without, as in a stream running on the connection's goroutine (inline
// streams, stream.go), it waits for the next burst however long, unless
// wake ends the wait with errWoken.
func (c *conn) serveFrame(mayIdle bool) error {
	if !c.rd.HasFrame() {
		if c.corked { // the burst is done: its answers leave now
			_ = c.out.Uncork()
			c.corked = false
		}
		if c.rd.Buffered() == 0 {
			if err := c.awaitBurst(mayIdle); err != nil {
				return err
			}
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.FrameTimeout))
	}
	f, err := c.rd.ReadFrame()
	if err != nil {
		return err
	}
	if !c.corked {
		c.out.Cork()
		c.corked, c.served = true, 0
		c.servedFrames = true
	}
	if err := c.dispatch(f); err != nil {
		return err
	}
	if c.served++; c.served%burstFlushFrames == 0 && !c.inStream {
		_ = c.out.Flush() // the client starts on these while we go on
	}
	return nil
}

// awaitBurst waits for the first bytes of the next burst: hot, then warm,
// then errIdle (see the top of this file). A goroutine that has served
// nothing yet, one the idler started, waits in waitIdle instead. Without
// mayIdle the warm wait has no end but wake.
func (c *conn) awaitBurst(mayIdle bool) error {
	if mayIdle && !c.servedFrames {
		c.srv.serving.Add(-1) // idle: not busy (busypoll)
		defer c.srv.serving.Add(1)
		return c.waitIdle()
	}
	if c.served > 1 && !c.inStream {
		c.poller.Poll(c.ready.socket(), c.srv.opts.BusyPoll, &c.srv.serving)
	}
	now := time.Now()
	c.idleSince = now.Sub(monoEpoch)
	_ = c.nc.SetReadDeadline(now.Add(hotReadWindow))
	if err := c.rd.Fill(); !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.rd.Release()
	c.srv.serving.Add(-1) // warm: no longer busy (busypoll)
	defer c.srv.serving.Add(1)
	if !mayIdle {
		return c.awaitWakeable()
	}
	_ = c.nc.SetReadDeadline(now.Add(idleAfter))
	if err := c.awaitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.servedFrames = false
	return errIdle
}

// errWoken is awaitWakeable's report that wake ended the wait.
var errWoken = errors.New("tcpserver: woken")

// awaitWakeable waits, with no deadline, until the connection is readable
// or wake is called; it then reports errWoken. A wake that came before
// the wait ends it at once. Only the wait for a burst's first byte is
// ever cut short: a frame half read stays whole.
func (c *conn) awaitWakeable() error {
	_ = c.nc.SetReadDeadline(time.Time{})
	c.wakeMu.Lock()
	if c.woken {
		c.woken = false
		c.wakeMu.Unlock()
		return errWoken
	}
	c.waiting = true
	c.wakeMu.Unlock()
	err := c.awaitReadable()
	c.wakeMu.Lock()
	woken := c.woken
	c.waiting, c.woken = false, false
	c.wakeMu.Unlock()
	if woken && (err == nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		return errWoken
	}
	return err
}

// wake ends an awaitWakeable wait, or the next one to start: an inline
// stream's context has ended and its handler must hear of it.
func (c *conn) wake() {
	c.wakeMu.Lock()
	c.woken = true
	if c.waiting {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
	c.wakeMu.Unlock()
}

// waitIdle waits, holding no read buffer on a socket, until the connection
// is readable. When the idle timeout passes with no call in flight it sends
// GOAWAY and reports io.EOF.
func (c *conn) waitIdle() error {
	c.rd.Release()
	for {
		var deadline time.Time
		if idle := c.srv.opts.IdleTimeout; idle > 0 {
			deadline = monoEpoch.Add(c.idleSince + idle)
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
		c.idleSince = monoNow()
	}
}

// monoEpoch is the origin of monoNow's clock.
var monoEpoch = time.Now()

// monoNow returns the time on the monotonic clock as a duration since
// monoEpoch: 8 bytes in a conn where a time.Time takes 24.
// monoEpoch.Add(monoNow()) is a time.Time again, with its monotonic
// reading.
func monoNow() time.Duration { return time.Since(monoEpoch) }

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
