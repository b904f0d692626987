package tcpserver

import "time"

// connWriter is the socket as the connection's wire.Writer sees it: the
// writing stage. Answers from any goroutine are coalesced by the Writer
// (the reader corks it through a burst); every write gets WriteTimeout to
// make progress, so a peer that stops reading cannot hold a call forever.
// The Writer is the only closer of the socket, and closing goes through the
// idler (idler.closeConn), so a parked socket is unparked first.
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	_ = w.c.nc.SetWriteDeadline(time.Now().Add(w.c.srv.opts.WriteTimeout))
	n, err := w.c.nc.Write(p)
	w.c.srv.counters.bytesOut.Add(uint64(n))
	return n, err
}

func (w connWriter) Close() error { return w.c.srv.idle.closeConn(w.c) }
