package tcpserver

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// connWriter is the socket as the connection's wire.Writer sees it: the
// writing stage. Answers from any goroutine are coalesced by the Writer
// (the reader corks it through a burst); every write gets WriteTimeout to
// make progress, so a peer that stops reading cannot hold a call forever.
// The Writer is the only closer of the socket, and closing goes through the
// idler (idler.closeConn), so a parked socket is unparked first. The
// Writer calls Write and Close one at a time, each holding the socket
// (holdSocket), so the idler never detaches it from under them.
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	c := w.c
	c.holdSocket()
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
	n, err := c.nc.Write(p)
	c.releaseSocket()
	c.srv.counters.bytesOut.Add(uint64(n))
	return n, err
}

// holdSocket marks the socket in use by the writer, first re-attaching it
// if the idler has detached it. Setting flagWriting and reading
// flagDetached is one atomic step, and the idler sets flagDetached and
// reads flagWriting in one: of a writer and a detach that meet, at least
// one sees the other, so the detach backs off or the writer waits for it
// to finish and undoes it (park_linux.go).
func (c *conn) holdSocket() {
	if c.flags.Or(flagWriting)&flagDetached != 0 {
		c.srv.idle.attach(c)
	}
}

// releaseSocket ends holdSocket's use.
func (c *conn) releaseSocket() { c.flags.And(^flagWriting) }

// Close ends the socket once everything queued has been written. While
// the connection's goroutine still reads (a GOAWAY drain: the last call
// was answered), it closes only the writing side (TLS close_notify, then
// FIN) and lets the reader go on discarding what the peer still sends, until
// the peer closes its side or closeLinger passes: closing a socket with
// unread bytes makes the kernel send a reset, which can destroy the GOAWAY
// and the last answers before the peer reads them. After the drain
// deadline, and where the socket cannot be half-closed, it closes at once.
func (w connWriter) Close() error {
	c := w.c
	c.holdSocket()
	defer c.releaseSocket()
	c.mu.Lock()
	now := c.readerDone || context.Cause(c) == errDrainDeadline
	c.mu.Unlock()
	if now || !halfClose(c.nc) {
		return c.srv.idle.closeConn(c)
	}
	c.mu.Lock()
	done := c.readerDone // shutdown came meanwhile and did not see us linger
	if !done {
		c.lingering = time.AfterFunc(closeLinger, func() { _ = c.srv.idle.closeConn(c) })
	}
	c.mu.Unlock()
	if done {
		return c.srv.idle.closeConn(c)
	}
	return nil
}

// closeLinger bounds how long a drained connection's socket stays
// half-closed, waiting for its peer to close.
const closeLinger = time.Second

// halfClose closes the writing side of nc, a TLS connection's after its
// close_notify alert, and reports whether it could.
func halfClose(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		if tc.CloseWrite() != nil {
			return false
		}
		nc = tc.NetConn()
	}
	cw, ok := nc.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}
