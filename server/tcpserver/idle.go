package tcpserver

// idler holds connections that have gone quiet, so that an idle connection
// costs no goroutine: the one interface between the reading stage and the
// platform's way of waiting. park_linux.go holds them in an epoll instance
// of the server's own; elsewhere (park_other.go) an idle connection waits
// in a fresh goroutine on the smallest stack.
type idler interface {
	// park takes over the wait for c's next bytes; the goroutine that
	// calls it returns right after. The idler runs c.run on a goroutine
	// again when c turns readable, when its idle timeout passes or when it
	// is closed.
	park(c *conn)
	// closeConn closes c's socket, taking c out of the idler first.
	closeConn(c *conn) error
	// attach gives c its net.Conn back if the idler detached it, and
	// wakes it; holdSocket calls it.
	attach(c *conn)
	// stop releases the idler once no connection is left.
	stop()
	// parked counts the connections it holds with no goroutine.
	parked() int
}
