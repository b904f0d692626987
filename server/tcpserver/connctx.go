package tcpserver

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc/peer"
)

// A conn is its connection's context.Context, the parent of its calls'
// contexts: it ends (with a cause) when the connection does, and carries
// the peer. It is base, a context.WithCancelCause, that answers for the
// end, so context.Cause and context.AfterFunc find base's cancelCtx as
// with any context derived from one; the conn itself adds only Value's
// peer. The peer.Peer is made on the first Value that asks for it (an
// access log record that names the peer, say), not for every connection:
// an idle connection holds neither it nor the context.WithValue that
// would carry it.

// Deadline reports no deadline: a connection has none.
func (c *conn) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done returns a channel closed when the connection ends.
func (c *conn) Done() <-chan struct{} { return c.base.Done() }

// Err returns nil while the connection lasts, then context.Canceled.
func (c *conn) Err() error { return c.base.Err() }

// Value returns the connection's peer.Peer for grpc/peer's key, else
// base's value for key.
func (c *conn) Value(key any) any {
	if key == peerContextKey {
		return c.peerInfo()
	}
	return c.base.Value(key)
}

// cancel ends the connection's context with cause (the first cause
// stays), setting flagCtxEnding first: call.Err's fast path relies on it.
func (c *conn) cancel(cause error) {
	c.flags.Or(flagCtxEnding)
	c.cancelBase(cause)
}

// peerInfo returns the connection's peer, making it on first use. Any
// goroutine holding a call's context may ask, even after the call, so it
// reads c.nc under wakeMu, which the idler holds to swap it (park_linux.go);
// a peer made while the connection is detached, from its stub, is not
// kept.
func (c *conn) peerInfo() *peer.Peer {
	if p := c.peer.Load(); p != nil {
		return p
	}
	c.wakeMu.Lock()
	nc, detached := c.nc, c.flags.Load()&flagDetached != 0
	c.wakeMu.Unlock()
	p := &peer.Peer{Addr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr()}
	if detached {
		return p
	}
	if c.peer.CompareAndSwap(nil, p) {
		return p
	}
	return c.peer.Load()
}

// peerContextKey is the key peer.FromContext asks a context's Value for,
// learnt once from peer.FromContext itself (grpc/peer keeps its key type
// unexported).
var peerContextKey = func() any {
	var k keyProbe
	peer.FromContext(&k)
	return k.key
}()

// keyProbe is a context that records the key it is asked for.
type keyProbe struct {
	context.Context
	key any
}

func (k *keyProbe) Value(key any) any {
	k.key = key
	return nil
}

// String names the context for debugging.
func (c *conn) String() string {
	c.wakeMu.Lock()
	nc := c.nc
	c.wakeMu.Unlock()
	return "tcpserver.conn(" + addrString(nc.RemoteAddr()) + ")"
}

func addrString(a net.Addr) string {
	if a == nil {
		return "?"
	}
	return a.String()
}

var _ context.Context = (*conn)(nil)
