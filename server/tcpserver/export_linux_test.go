package tcpserver

import (
	"testing"
	"time"
)

// SetDetachAfter makes the servers the test starts from now on detach a
// parked connection after d instead of detachAfter.
func SetDetachAfter(t testing.TB, d time.Duration) {
	old := detachAfter
	detachAfter = d
	t.Cleanup(func() { detachAfter = old })
}

// Detached counts s's detached connections.
func Detached(s *Server) int {
	p := s.idle.(*parker)
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.conns {
		if c.flags.Load()&flagDetached != 0 {
			n++
		}
	}
	return n
}

// LockParker holds s's parker still (no wake, no detach) until the
// returned function is called.
func LockParker(s *Server) (unlock func()) {
	p := s.idle.(*parker)
	p.mu.Lock()
	return p.mu.Unlock
}
