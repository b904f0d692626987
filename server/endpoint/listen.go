package endpoint

import (
	"net"
	"sync"
)

// LimitListener returns a listener that admits at most maxConns
// connections in all and perAddr from one IP address (PeerKey): Accept
// closes a connection past either at once, before the application
// protocol's handshake, and goes on to the next. A connection counts until
// it is first closed. The gRPC and HTTP endpoints limit their connections
// with it; the raw TCP server, which can say why it refuses one, counts its
// own.
func LimitListener(l net.Listener, maxConns, perAddr int) net.Listener {
	return &limitListener{Listener: l, maxConns: maxConns, perAddr: perAddr, byAddr: map[string]int{}}
}

type limitListener struct {
	net.Listener
	maxConns, perAddr int

	mu     sync.Mutex
	total  int
	byAddr map[string]int
}

// Accept returns the next connection within the limits, closing those
// past them.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := PeerKey(nc.RemoteAddr())
		if l.take(key) {
			return &limitedConn{Conn: nc, l: l, key: key}, nil
		}
		nc.Close()
	}
}

func (l *limitListener) take(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.maxConns || l.byAddr[key] >= l.perAddr {
		return false
	}
	l.total++
	l.byAddr[key]++
	return true
}

func (l *limitListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[key]--; l.byAddr[key] == 0 {
		delete(l.byAddr, key)
	}
}

// limitedConn gives its place back when it is first closed.
type limitedConn struct {
	net.Conn
	l    *limitListener
	key  string
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c.key) })
	return c.Conn.Close()
}
