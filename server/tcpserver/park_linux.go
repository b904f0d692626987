package tcpserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker is the Linux idler: it holds idle connections without a goroutine
// each. A parked
// connection's socket is registered, one-shot, in an epoll instance of the
// parker's own (Go's netpoller keeps its registration in its own instance:
// a socket may sit in both); one goroutine waits on it and gives a
// connection a fresh goroutine again when its socket turns readable, when
// its idle timeout passes, or when it is about to be closed. A goroutine's
// stack is at least 2 KiB, which is most of what an idle connection would
// otherwise cost.
//
// The epoll instance is made on the first park. If that fails (a process
// out of file descriptors), a connection that cannot be parked waits in a
// goroutine of its own, as on other platforms.
//
// A connection parked for detachAfter with no call in flight is detached
// as well: the parker registers a duplicate of its socket's descriptor in
// place of the original and closes the net.Conn, which takes the socket
// out of Go's netpoller and frees the net.Conn, its addresses and its poll
// descriptor (the runtime keeps that for the next connection to reuse):
// about a third of what a parked connection costs (BENCHMARKS.md, "Idle
// connections: what one costs"). While detached, c.nc is a stub with no
// socket. Waking a detached connection makes a net.Conn of the descriptor
// again (net.FileConn: with the detach, about 24 system calls), which
// detachAfter keeps off connections that pause only briefly. The writer
// re-attaches a detached connection before it writes (holdSocket), so a
// GOAWAY from Shutdown or MaxConnectionAge finds a socket. Only TCP
// sockets are detached (TLS connections, whose state lives in the
// tls.Conn, are never parked at all).
type parker struct {
	idle        time.Duration // Options.IdleTimeout; the sweep's period follows it
	detachAfter time.Duration // how long a connection stays parked before it is detached

	mu      sync.Mutex
	epfd    int             // -1 until made
	wakeR   int             // read end of the pipe that stops the loop
	wakeW   int             // write end
	failed  bool            // making the epoll instance failed: never park
	stopped bool            // stop was called: park no more
	conns   map[int32]*conn // parked connections by file descriptor
	running bool            // the loop goroutine is running
	done    chan struct{}   // closed when the loop goroutine exits
	detach  []*conn         // the sweep's scratch: connections to detach
}

// parkState is a connection's place in the parker, guarded by parker.mu.
// Whether it is detached is conn.flags' flagDetached, which the writer
// reads without the lock.
type parkState struct {
	parked bool
	closed bool  // the socket is closed: never park
	fd     int32 // the descriptor it is registered under, while parked
}

// detachAfter is how long a connection stays parked before the parker
// detaches it. A detach and the wake after it cost the server about 20 µs
// more than a park and wake (14 allocations; about half of a unary call's
// CPU here), so a connection that pauses less than this between calls
// never pays it. The poll descriptors that detaching frees are only
// reused, never returned (parker), so what detaching saves after a burst
// of new connections (a restart's reconnecting clients) depends on how
// many are attached at once: at 7,000 connections a second, about
// 7,000 × (idleAfter + detachAfter). A variable so that tests can shorten
// it.
var detachAfter = time.Second

// maxDetachesPerSweep bounds the work one sweep does under the parker's
// lock (a detach is five system calls): a burst of connections going idle
// together is detached over a few sweeps.
const maxDetachesPerSweep = 1024

// parkEvents is what a parked socket is registered for: readable (a call,
// or EOF), the peer's half-close, once.
const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

func newIdler(idle time.Duration) idler {
	return &parker{idle: idle, detachAfter: detachAfter, epfd: -1, conns: map[int32]*conn{}}
}

// park hands c's reading over to the parker; c's goroutine returns right
// after. A connection that cannot be parked (no socket, the epoll instance
// failed, the parker stopped) waits in a fresh goroutine instead.
func (p *parker) park(c *conn) {
	if !p.tryPark(c) {
		go c.run()
	}
}

// tryPark registers c in the epoll instance, or reports false.
func (p *parker) tryPark(c *conn) bool {
	if c.ready.rc == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || c.park.closed || !p.start() {
		return false
	}
	var err error
	ctlErr := c.ready.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: parkEvents, Fd: int32(fd)}
		if err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev); err == nil {
			c.park.fd = int32(fd)
		}
	})
	if ctlErr != nil || err != nil {
		return false // closed meanwhile, or no room: the goroutine waits
	}
	c.park.parked = true
	p.conns[c.park.fd] = c
	return true
}

// closeConn closes c's socket, first taking c out of the parker if it is
// parked (and running it on a fresh goroutine, which sees the socket
// closed). Both happen under the parker's lock and c is never parked
// again, so the descriptor the epoll instance knows c by is never another
// socket's.
func (p *parker) closeConn(c *conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wakeLocked(c)
	c.park.closed = true
	return c.nc.Close()
}

// attach wakes c if it is detached, giving it its net.Conn back first.
func (p *parker) attach(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.flags.Load()&flagDetached != 0 {
		p.wakeLocked(c)
	}
}

// wakeLocked removes a parked c, re-attaching it if it is detached, and
// gives it a goroutine; p.mu is held.
func (p *parker) wakeLocked(c *conn) {
	if !c.park.parked {
		return
	}
	p.unregisterLocked(c)
	if c.flags.Load()&flagDetached != 0 {
		p.reattachLocked(c)
	}
	go c.run()
}

// unregisterLocked takes a parked c out of the epoll instance; p.mu is
// held.
func (p *parker) unregisterLocked(c *conn) {
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(c.park.fd), nil)
	delete(p.conns, c.park.fd)
	c.park.parked = false
}

// detachLocked detaches a parked c (see parker) unless it cannot be: not
// a plain TCP socket, a call in flight, draining, or the writer using the
// socket (it is tried again at the next sweep). p.mu is held.
func (p *parker) detachLocked(c *conn) {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok || c.ready.rc == nil || c.park.closed {
		return
	}
	c.mu.Lock()
	busy := c.open > 0 || c.draining || c.closed
	c.mu.Unlock()
	if busy {
		return
	}
	if c.flags.Or(flagDetached)&flagWriting != 0 {
		c.flags.And(^flagDetached)
		return
	}
	// From here until c.nc is the stub, a writer that comes waits in attach
	// for p.mu, then undoes the detach.
	dup, err := -1, error(nil)
	if ctlErr := c.ready.rc.Control(func(fd uintptr) { dup, err = dupCloexec(int(fd)) }); ctlErr != nil || err != nil {
		c.flags.And(^flagDetached)
		return
	}
	ev := syscall.EpollEvent{Events: parkEvents, Fd: int32(dup)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, dup, &ev); err != nil {
		syscall.Close(dup)
		c.flags.And(^flagDetached)
		return
	}
	// The original leaves the epoll instance before it is closed: closing
	// a descriptor whose socket a duplicate keeps open would leave its
	// registration behind.
	p.unregisterLocked(c)
	c.park.parked, c.park.fd = true, int32(dup)
	p.conns[c.park.fd] = c
	_ = tc.Close()  // out of Go's netpoller; the duplicate keeps the socket open
	c.wakeMu.Lock() // peerInfo reads c.nc from any goroutine
	c.nc, c.ready.rc = detachedConn{}, nil
	c.wakeMu.Unlock()
}

// reattachLocked gives a detached c a net.Conn of its socket again: p.mu
// is held and c is out of the epoll instance. net.FileConn duplicates the
// parker's descriptor, which is then closed. If that fails (the process
// is out of descriptors, or the peer reset the connection meanwhile and
// it has no address left) c keeps its stub, and its goroutine finds the
// connection closed.
func (p *parker) reattachLocked(c *conn) {
	defer func() {
		c.wakeMu.Lock()
		c.flags.And(^flagDetached)
		c.wakeMu.Unlock()
	}()
	ka, kaErr := keepAlive(int(c.park.fd))
	f := os.NewFile(uintptr(c.park.fd), "")
	nc, err := net.FileConn(f)
	_ = f.Close()
	var raw syscall.RawConn
	if err == nil {
		raw, err = nc.(syscall.Conn).SyscallConn()
	}
	if err == nil && (nc.RemoteAddr() == nil || nc.LocalAddr() == nil) {
		err = errNoAddress // net.FileConn ignores getpeername's ENOTCONN
	}
	if tc, ok := nc.(*net.TCPConn); ok && err == nil && kaErr == nil {
		// net.FileConn sets Go's default keepalive: put back the
		// listener's (calcd sets its own).
		err = tc.SetKeepAliveConfig(ka)
	}
	if err != nil {
		c.park.closed = true
		level := slog.LevelWarn // out of descriptors: the operator should know
		if errors.Is(err, errNoAddress) {
			level = slog.LevelDebug // the client went away
		}
		c.srv.logger.Log(context.Background(), level, "could not re-attach an idle connection; closing it", "peer", c.peerKey, "error", err)
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	c.wakeMu.Lock()
	c.nc, c.ready.rc = nc, raw
	c.wakeMu.Unlock()
}

// errNoAddress is a re-attached socket's failure to say whose it is: it
// was reset while detached.
var errNoAddress = errors.New("tcpserver: socket has no address (reset while idle)")

// keepAlive reads socket fd's TCP keepalive settings.
func keepAlive(fd int) (net.KeepAliveConfig, error) {
	var ka net.KeepAliveConfig
	var v [4]int
	for i, o := range [4][2]int{
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
	} {
		var err error
		if v[i], err = syscall.GetsockoptInt(fd, o[0], o[1]); err != nil {
			return ka, err
		}
	}
	ka.Enable = v[0] != 0
	ka.Idle, ka.Interval, ka.Count = time.Duration(v[1])*time.Second, time.Duration(v[2])*time.Second, v[3]
	if !ka.Enable {
		ka.Idle, ka.Interval, ka.Count = -1, -1, -1
	}
	return ka, nil
}

// dupCloexec duplicates fd, close-on-exec.
func dupCloexec(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// detachedConn is a detached connection's net.Conn: it has no socket, and
// every use fails as a closed connection's would. It has no size, so
// storing it allocates nothing.
type detachedConn struct{}

func (detachedConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (detachedConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (detachedConn) Close() error                     { return nil }
func (detachedConn) LocalAddr() net.Addr              { return detachedAddr{} }
func (detachedConn) RemoteAddr() net.Addr             { return detachedAddr{} }
func (detachedConn) SetDeadline(time.Time) error      { return net.ErrClosed }
func (detachedConn) SetReadDeadline(time.Time) error  { return net.ErrClosed }
func (detachedConn) SetWriteDeadline(time.Time) error { return net.ErrClosed }

// detachedAddr is a detached connection's address: unknown.
type detachedAddr struct{}

func (detachedAddr) Network() string { return "tcp" }
func (detachedAddr) String() string  { return "detached" }

// start makes the epoll instance and starts the loop, once; p.mu is held.
func (p *parker) start() bool {
	if p.epfd >= 0 || p.failed {
		return !p.failed
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		p.failed = true
		return false
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		p.failed = true
		return false
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(pipe[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, pipe[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(pipe[0])
		syscall.Close(pipe[1])
		p.failed = true
		return false
	}
	p.epfd, p.wakeR, p.wakeW = epfd, pipe[0], pipe[1]
	p.running = true
	p.done = make(chan struct{})
	go p.loop()
	return true
}

// stop ends the loop once no connection is parked (Shutdown calls it after
// every connection has closed) and releases the epoll instance.
func (p *parker) stop() {
	p.mu.Lock()
	p.stopped = true
	running, done := p.running, p.done
	if running {
		_, _ = syscall.Write(p.wakeW, []byte{0})
	}
	p.mu.Unlock()
	if running {
		<-done
	}
}

// parked counts the parked connections.
func (p *parker) parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// maxSweepPeriod bounds how late a parked connection's idle timeout is
// noticed.
const maxSweepPeriod = time.Second

// loop is the parker's goroutine: it wakes connections whose sockets turn
// readable, and sweeps for idle timeouts.
func (p *parker) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	period := maxSweepPeriod
	if p.idle > 0 {
		period = min(period, p.idle/4)
	}
	period = max(min(period, p.detachAfter/4), 10*time.Millisecond)
	nextSweep := time.Now().Add(period)
	for {
		wait := int(max(time.Until(nextSweep), time.Millisecond) / time.Millisecond)
		n, err := syscall.EpollWait(p.epfd, events, wait)
		if err != nil && err != syscall.EINTR {
			n = 0 // not expected; the sweep below still runs
		}
		p.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			if ev.Fd == int32(p.wakeR) {
				p.close()
				p.mu.Unlock()
				return
			}
			if c := p.conns[ev.Fd]; c != nil {
				p.wakeLocked(c)
			}
		}
		if !time.Now().Before(nextSweep) {
			now := time.Now()
			mono := now.Sub(monoEpoch)
			for _, c := range p.conns {
				switch since := mono - c.idleSince; {
				case p.idle > 0 && since >= p.idle:
					p.wakeLocked(c) // its goroutine sends GOAWAY, or waits on if busy
				case since >= p.detachAfter && c.flags.Load()&flagDetached == 0 && len(p.detach) < maxDetachesPerSweep:
					if _, tcp := c.nc.(*net.TCPConn); tcp { // not a Unix socket
						p.detach = append(p.detach, c)
					}
				}
			}
			for _, c := range p.detach {
				p.detachLocked(c)
			}
			clear(p.detach)
			p.detach = p.detach[:0]
			nextSweep = now.Add(period)
		}
		p.mu.Unlock()
	}
}

// close wakes any connection still parked and releases the epoll instance
// and the pipe; p.mu is held.
func (p *parker) close() {
	for _, c := range p.conns {
		p.wakeLocked(c)
	}
	syscall.Close(p.epfd)
	syscall.Close(p.wakeR)
	syscall.Close(p.wakeW)
	p.epfd = -1
	p.running = false
}
