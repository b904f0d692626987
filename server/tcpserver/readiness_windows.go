//go:build windows

package tcpserver

import (
	"syscall"

	"github.com/calcrpc/calc/internal/busypoll"
)

// readiness waits until a connection has bytes to read without reading
// them. On Windows the runtime answers a RawConn.Read callback that reports
// "not ready" with a zero-byte overlapped WSARecv on the IOCP, which
// completes once data has arrived: the form of IOCP's classic zero-byte read
// that keeps an idle connection free of buffers.
type readiness struct {
	rc     syscall.RawConn // nil when the connection has no socket
	waited bool
	check  func(fd uintptr) bool
}

func newReadiness(rc syscall.RawConn) *readiness {
	r := &readiness{rc: rc}
	r.check = func(uintptr) bool {
		if r.waited {
			return true
		}
		r.waited = true
		return false
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
	r.waited = false
	return r.rc.Read(r.check)
}

// socket returns nil: connections here do not busy-poll.
func (*readiness) socket() busypoll.Socket { return nil }
