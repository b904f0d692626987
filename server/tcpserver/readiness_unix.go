//go:build unix

package tcpserver

import (
	"syscall"

	"github.com/calcrpc/calc/internal/busypoll"
)

// readiness waits until a connection has bytes to read (or EOF, or an
// error) without reading them, so the caller takes a read buffer only once
// there is something to put in it. The check is a poll(2) that does not
// wait (busypoll.Ready), which leaves a pending error for the read to
// report; when it finds nothing, the runtime parks the goroutine on the
// netpoller (epoll, kqueue) until the socket becomes readable or the read
// deadline passes. The callback is built once per connection, so a wait
// allocates nothing.
type readiness struct {
	rc       syscall.RawConn // nil when the connection has no file descriptor
	probing  bool            // Readable's check: never wait
	readable bool            // the last check's finding
	check    func(fd uintptr) bool
}

func newReadiness(rc syscall.RawConn) *readiness {
	r := &readiness{rc: rc}
	r.check = func(fd uintptr) bool {
		r.readable = busypoll.Ready(fd)
		return r.readable || r.probing
	}
	return r
}

// socket returns r as the busypoll.Socket its connection polls, or nil
// when it has no socket.
func (r *readiness) socket() busypoll.Socket {
	if r.rc == nil {
		return nil
	}
	return r
}

// Readable reports whether the connection has bytes to read now, without
// waiting (busypoll.Socket).
func (r *readiness) Readable() bool {
	r.probing, r.readable = true, false
	err := r.rc.Read(r.check)
	r.probing = false
	return err != nil || r.readable // an error: the read reports it
}

// canWait reports whether wait can wait: the connection is a socket.
func (r *readiness) canWait() bool { return r.rc != nil }

// wait blocks until the connection is readable or its read deadline passes.
func (r *readiness) wait() error {
	if r.rc == nil {
		return nil
	}
	return r.rc.Read(r.check)
}
