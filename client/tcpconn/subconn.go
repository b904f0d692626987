package tcpconn

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	calcbackoff "github.com/calcrpc/calc/internal/backoff"
)

// subConn keeps one endpoint of a Client connected: its goroutine, run,
// connects, waits for the connection's end, and connects again, with
// backoff after failures.
type subConn struct {
	c        *Client
	addr     string
	ctx      context.Context // ends when the endpoint is removed or the Client closes
	cancel   context.CancelFunc
	inflight atomic.Int64
	removed  atomic.Bool
	idle     chan struct{} // signalled when a removed subConn's last call ends

	// Guarded by c.mu.
	state connectivity.State // CONNECTING, READY or TRANSIENT_FAILURE
	conn  *Conn              // while READY
}

// release ends a call counted in flight by choose.
func (sc *subConn) release() {
	if sc.inflight.Add(-1) == 0 && sc.removed.Load() {
		select {
		case sc.idle <- struct{}{}:
		default:
		}
	}
}

// run is the subConn's goroutine. The first attempt starts at once, and
// so does the first after a READY connection ends; after a failed attempt
// the next starts the backoff delay after the failed one started.
func (sc *subConn) run() {
	defer sc.c.wg.Done()
	var old []*Conn // connections that got GOAWAY and still answer calls
	defer func() {
		for _, conn := range old {
			conn.Close()
		}
	}()
	for retries := 0; ; {
		wait := calcbackoff.Delay(sc.c.opts.Backoff, retries, rand.Float64())
		next := time.Now().Add(wait)
		conn, err := sc.connect(max(wait, sc.c.opts.MinConnectTimeout))
		if err == nil {
			retries = 0
			sc.c.setState(sc, connectivity.Ready, conn, nil)
			select {
			case <-conn.ended:
				sc.c.lost(sc, conn)
				sc.c.requestResolve()
				old = append(slices.DeleteFunc(old, (*Conn).isGone), conn)
				continue
			case <-sc.ctx.Done():
				sc.drain(conn)
				return
			}
		}
		if sc.ctx.Err() != nil {
			return
		}
		sc.c.setState(sc, connectivity.TransientFailure, nil, err)
		sc.c.requestResolve()
		retries++
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
		case <-sc.ctx.Done():
			t.Stop()
			return
		}
		sc.c.setState(sc, connectivity.Connecting, nil, nil)
	}
}

// connect makes one connection attempt, handshake included, within
// timeout.
func (sc *subConn) connect(timeout time.Duration) (*Conn, error) {
	ctx, cancel := context.WithTimeout(sc.ctx, timeout)
	defer cancel()
	opts := sc.c.opts.Conn
	// TLS verifies the name the user gave: a dns:/// target's host, not
	// the address it resolved to.
	name := sc.addr
	if sc.c.target.host != "" {
		name = net.JoinHostPort(sc.c.target.host, sc.c.target.port)
	}
	opts.TLSConfig = withServerName(opts.TLSConfig, name)
	if sc.c.opts.Dial == nil {
		return Dial(ctx, sc.addr, opts)
	}
	nc, err := sc.c.opts.Dial(ctx, sc.addr)
	if err != nil {
		return nil, dialError(sc.addr, err)
	}
	conn, err := NewConn(ctx, nc, opts)
	if err != nil {
		nc.Close()
	}
	return conn, err
}

// drain closes conn once its calls have ended if the endpoint was
// removed, or at once if the Client is closing.
func (sc *subConn) drain(conn *Conn) {
	defer conn.Close()
	for sc.c.ctx.Err() == nil && sc.inflight.Load() > 0 {
		select {
		case <-sc.idle:
		case <-conn.readerOut:
			return
		case <-sc.c.ctx.Done():
			return
		}
	}
}

// setState records sc's new state, conn when READY, and err, a failed
// connection attempt's error. An endpoint in TRANSIENT_FAILURE stays so
// through its next attempts until READY, as in gRPC's round_robin.
func (c *Client) setState(sc *subConn, st connectivity.State, conn *Conn, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st != connectivity.Connecting || sc.state != connectivity.TransientFailure {
		sc.state = st
	}
	sc.conn = conn
	if err != nil {
		c.lastErr = err
	}
	c.updateLocked()
}

// lost takes conn, which has ended or got GOAWAY, out of the picks if it
// is still sc's: sc is CONNECTING again.
func (c *Client) lost(sc *subConn, conn *Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sc.conn == conn {
		sc.conn, sc.state = nil, connectivity.Connecting
		c.updateLocked()
	}
}

// requestResolve asks the resolver goroutine, if any, to resolve again.
func (c *Client) requestResolve() {
	select {
	case c.resolveNow <- struct{}{}:
	default:
	}
}

// resolve is the goroutine of a Client with a dns:/// target: it
// resolves at once, then every ResolveInterval and whenever a
// sub-connection asks, and after a failure again with backoff.
func (c *Client) resolve() {
	defer c.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for retries := 0; ; {
		select {
		case <-t.C:
		case <-c.resolveNow:
		case <-c.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.MinConnectTimeout)
		addrs, err := c.target.resolve(ctx, c.opts.LookupHost)
		cancel()
		if err != nil {
			c.resolveFailed(err)
			t.Reset(calcbackoff.Delay(c.opts.Backoff, retries, rand.Float64()))
			retries++
			continue
		}
		retries = 0
		c.setAddrs(addrs)
		t.Reset(c.opts.ResolveInterval)
	}
}

// resolveFailed records a failed resolution. The endpoints resolved
// before are kept.
func (c *Client) resolveFailed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = status.Errorf(codes.Unavailable, "tcpconn: %v", err)
	c.updateLocked()
}

// setAddrs makes addrs the Client's endpoints: it starts a subConn for
// each new one, in order, and removes those no longer listed.
func (c *Client) setAddrs(addrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	old := map[string]*subConn{}
	for _, sc := range c.subs {
		old[sc.addr] = sc
	}
	subs := make([]*subConn, 0, len(addrs))
	for _, a := range addrs {
		if slices.ContainsFunc(subs, func(sc *subConn) bool { return sc.addr == a }) {
			continue
		}
		sc := old[a]
		if sc == nil {
			sc = &subConn{c: c, addr: a, idle: make(chan struct{}, 1), state: connectivity.Connecting}
			sc.ctx, sc.cancel = context.WithCancel(c.ctx)
			c.wg.Add(1)
			go sc.run()
		}
		delete(old, a)
		subs = append(subs, sc)
	}
	c.subs = subs
	c.updateLocked() // before removed is set: choose retries with the new list
	for _, sc := range old {
		sc.removed.Store(true)
		sc.cancel()
	}
}
