//go:build !linux

package tcpserver

import "time"

// goroutineIdler is the idler where there is no epoll: an idle connection
// waits in a goroutine of its own, started fresh so that it holds the
// smallest stack, whatever depth the last burst's handlers reached.
type goroutineIdler struct{}

// parkState is a connection's place in the idler: none here.
type parkState struct{}

func newIdler(time.Duration) idler { return goroutineIdler{} }

func (goroutineIdler) park(c *conn) { go c.run() }

func (goroutineIdler) closeConn(c *conn) error { return c.nc.Close() }

func (goroutineIdler) attach(*conn) {} // never detached

func (goroutineIdler) stop() {}

func (goroutineIdler) parked() int { return 0 } // each waits in a goroutine
