package tcpserver

import (
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
type parker struct {
	idle time.Duration // Options.IdleTimeout; the sweep's period follows it

	mu      sync.Mutex
	epfd    int             // -1 until made
	wakeR   int             // read end of the pipe that stops the loop
	wakeW   int             // write end
	failed  bool            // making the epoll instance failed: never park
	stopped bool            // stop was called: park no more
	conns   map[int32]*conn // parked connections by file descriptor
	running bool            // the loop goroutine is running
	done    chan struct{}   // closed when the loop goroutine exits
}

// parkState is a connection's place in the parker, guarded by parker.mu.
type parkState struct {
	parked bool
	closed bool  // the socket is closed: never park
	fd     int32 // the descriptor it is registered under, while parked
}

func newIdler(idle time.Duration) idler {
	return &parker{idle: idle, epfd: -1, conns: map[int32]*conn{}}
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
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
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

// wakeLocked removes a parked c and gives it a goroutine; p.mu is held.
func (p *parker) wakeLocked(c *conn) {
	if !c.park.parked {
		return
	}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(c.park.fd), nil)
	delete(p.conns, c.park.fd)
	c.park.parked = false
	go c.run()
}

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
	period := min(max(p.idle/4, 10*time.Millisecond), maxSweepPeriod)
	nextSweep := time.Now().Add(period)
	for {
		wait := -1
		if p.idle > 0 {
			wait = int(max(time.Until(nextSweep), time.Millisecond) / time.Millisecond)
		}
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
		if p.idle > 0 && !time.Now().Before(nextSweep) {
			now := time.Now()
			mono := now.Sub(monoEpoch)
			for _, c := range p.conns {
				if mono-c.idleSince >= p.idle {
					p.wakeLocked(c) // its goroutine sends GOAWAY, or waits on if busy
				}
			}
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
