//go:build unix

package tcpserver

import "syscall"

// readiness waits until a connection has bytes to read (or EOF, or an
// error) without reading them, so the caller takes a read buffer only once
// there is something to put in it. The check is a one-byte MSG_PEEK receive;
// when it would block, the runtime parks the goroutine on the netpoller
// (epoll, kqueue) until the socket becomes readable or the read deadline
// passes. The callback is built once per connection, so a wait allocates
// nothing.
type readiness struct {
	rc    syscall.RawConn // nil when the connection has no file descriptor
	peek  [1]byte
	check func(fd uintptr) bool
}

func newReadiness(rc syscall.RawConn) *readiness {
	r := &readiness{rc: rc}
	r.check = func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), r.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
		}
	}
	return r
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
