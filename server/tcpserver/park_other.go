//go:build !linux

package tcpserver

import "time"

// parker would hold idle connections without a goroutine each; it does so
// on Linux only (park_linux.go). Elsewhere an idle connection waits in a
// goroutine of its own, on a fresh 2 KiB stack.
type parker struct{}

// parkState is a connection's place in the parker: none here.
type parkState struct{}

func newParker(time.Duration) *parker { return &parker{} }

// park reports false: the connection's goroutine waits itself.
func (*parker) park(*conn) bool { return false }

// closeConn closes c's socket.
func (*parker) closeConn(c *conn) error { return c.nc.Close() }

// stop has nothing to do.
func (*parker) stop() {}
