package tcpserver

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/calcrpc/calc/server/endpoint"
)

// admission is the server's count of its connections against the
// server-wide budgets: every connection, by remote address, and the ones
// still in the handshake in the order they came. It is guarded by the
// server's mu.
type admission struct {
	conns       map[*conn]struct{}
	perAddr     map[string]int
	handshaking map[*conn]uint64 // connections before their preface, by arrival
	arrivals    uint64
	established int // connections past the handshake
}

func newAdmission() admission {
	return admission{conns: map[*conn]struct{}{}, perAddr: map[string]int{}, handshaking: map[*conn]uint64{}}
}

// all returns every connection.
func (a *admission) all() []*conn {
	out := make([]*conn, 0, len(a.conns))
	for c := range a.conns {
		out = append(out, c)
	}
	return out
}

// admit takes a new connection into the handshake, or returns nil and the
// reason to give it (none after Shutdown). At MaxHandshakes the oldest
// connection still in the handshake is cut off to make room: a client
// that does not send its preface loses its place to one that might.
func (s *Server) admit(nc net.Conn) (*conn, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &s.admission
	if s.shutdown.Load() {
		return nil, ""
	}
	key := endpoint.PeerKey(nc.RemoteAddr())
	if a.perAddr[key] >= s.opts.MaxConnectionsPerAddr {
		s.counters.refused[refusedPerAddr].Add(1)
		return nil, "too many connections from this address"
	}
	if len(a.handshaking) >= s.opts.MaxHandshakes {
		var oldest *conn
		for c, n := range a.handshaking {
			if oldest == nil || n < a.handshaking[oldest] {
				oldest = c
			}
		}
		delete(a.handshaking, oldest)
		s.counters.refused[refusedHandshakeEvicted].Add(1)
		_ = oldest.nc.SetReadDeadline(time.Unix(1, 0)) // its handshake fails at once
	}
	if s.tls != nil {
		nc = tls.Server(nc, s.tls) // its handshake runs in conn.handshake
	}
	c := newConn(s, nc, key)
	// The handshake's deadline is set here, under mu, so that an eviction
	// (above, also under mu) always comes after it and wins.
	_ = nc.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	a.conns[c] = struct{}{}
	a.perAddr[key]++
	a.arrivals++
	a.handshaking[c] = a.arrivals
	return c, ""
}

// establish moves a connection that sent its preface out of the handshake
// and counts it against MaxConnections. It returns false and the reason to
// give (none if the connection was cut off or the server is shutting down)
// when the connection must close instead.
func (s *Server) establish(c *conn) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &s.admission
	if _, ok := a.handshaking[c]; !ok || s.shutdown.Load() {
		return false, "" // cut off for a newer connection, or shutting down
	}
	delete(a.handshaking, c)
	if a.established >= s.opts.MaxConnections {
		s.counters.refused[refusedMaxConnections].Add(1)
		return false, "too many connections"
	}
	a.established++
	c.established = true
	return true, ""
}

// handshakeTimedOut counts a connection whose handshake hit its deadline,
// unless it was cut off for a newer one (counted by admit).
func (s *Server) handshakeTimedOut(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.admission.handshaking[c]; ok {
		s.counters.refused[refusedHandshakeTimeout].Add(1)
	}
}

// forget removes a closed connection from the counts.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &s.admission
	delete(a.conns, c)
	delete(a.handshaking, c)
	if a.perAddr[c.peerKey]--; a.perAddr[c.peerKey] <= 0 {
		delete(a.perAddr, c.peerKey)
	}
	if c.established {
		a.established--
	}
	if len(a.conns) == 0 && s.connsDone != nil {
		close(s.connsDone)
		s.connsDone = nil
	}
}

// takeStream counts a new stream against MaxStreams, or reports false.
func (s *Server) takeStream() bool {
	if s.streams.Add(1) > int64(s.opts.MaxStreams) {
		s.streams.Add(-1)
		return false
	}
	return true
}

// giveStream uncounts an ended stream.
func (s *Server) giveStream() { s.streams.Add(-1) }
