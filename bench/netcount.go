package bench

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
)

// ByteCounter counts the bytes read and written on the connections it
// wraps: TCP payload, the bytes an RPC system puts on the wire. The zero
// value is ready to use and it is safe for concurrent use.
type ByteCounter struct {
	read, written atomic.Uint64
}

// Wrap returns nc counting into c.
func (c *ByteCounter) Wrap(nc net.Conn) net.Conn { return &countingConn{Conn: nc, c: c} }

// Totals returns the bytes read and written so far.
func (c *ByteCounter) Totals() (read, written uint64) { return c.read.Load(), c.written.Load() }

// countingConn is a net.Conn that counts its bytes.
type countingConn struct {
	net.Conn
	c *ByteCounter
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.read.Add(uint64(n))
	return n, err
}

func (cc *countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.written.Add(uint64(n))
	return n, err
}

// SyscallConn returns the wrapped connection's raw connection, so that a
// client behind the counter still peeks at its socket (tcpconn's busy
// polling), as it does without one.
func (cc *countingConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := cc.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}
