package httpserver

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// serveAgeing serves lis when MaxConnectionAge is set: each connection
// gets an http.Server of its own (configured as the endpoint's), so that
// when it is MaxConnectionAge old (±10%, as the other transports jitter it)
// that server alone can be shut down: an HTTP/2 connection is sent GOAWAY
// and closes once its requests are done, an HTTP/1.1 one closes after the
// response in flight or at once if idle. Its clients reconnect, and a load
// balancer may send them elsewhere. Past MaxConnectionAgeGrace more, the
// connection is closed, ending what still runs. It returns once lis is
// closed (by Shutdown) or fails.
func (s *Server) serveAgeing(lis net.Listener) error {
	var delay time.Duration // after a temporary Accept error, as net/http waits
	for {
		nc, err := lis.Accept()
		if err != nil {
			var ne net.Error
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.serveAged(nc)
	}
}

// serveAged serves one connection on an http.Server of its own, which it
// shuts down when the connection has aged.
func (s *Server) serveAged(nc net.Conn) {
	l := &oneConnListener{conn: nc, addr: nc.LocalAddr(), done: make(chan struct{})}
	a := &agedConn{}
	a.hs = s.newHTTPServer(func(_ net.Conn, state http.ConnState) {
		if state == http.StateClosed || state == http.StateHijacked {
			l.Close() // the server's Serve returns
		}
	})
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.aged[a] = struct{}{}
	s.mu.Unlock()
	age := time.Duration(float64(s.opts.MaxConnectionAge) * (0.9 + 0.2*rand.Float64()))
	timer := time.AfterFunc(age, func() { a.shutdown(s.opts.MaxConnectionAgeGrace) })
	go func() {
		_ = a.hs.Serve(l) // returns when l is closed: the connection has ended
		timer.Stop()
		s.mu.Lock()
		delete(s.aged, a)
		s.mu.Unlock()
	}()
}

// agedConn is one connection's http.Server.
type agedConn struct {
	hs *http.Server
}

// shutdown drains the connection, within grace if it is positive, then
// closes it.
func (a *agedConn) shutdown(grace time.Duration) {
	ctx := context.Background()
	if grace > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, grace)
		defer cancel()
	}
	if err := a.hs.Shutdown(ctx); err != nil {
		a.hs.Close()
	}
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	mu   sync.Mutex
	conn net.Conn // nil once handed out
	addr net.Addr
	once sync.Once
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }
