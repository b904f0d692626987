//go:build unix

package busypoll

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawSocket checks a socket with Ready. Its callback is built once, so a
// check allocates nothing.
type rawSocket struct {
	rc       syscall.RawConn
	readable bool
	check    func(fd uintptr) bool
}

// NewSocket returns the Socket of nc, or nil when nc does not expose a
// socket (a TLS connection, whose socket carries records, not the bytes
// its reader reads; a pipe). A wrapper that exposes its socket
// (syscall.Conn) must read the socket's bytes as they are.
func NewSocket(nc net.Conn) Socket {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &rawSocket{rc: rc}
	s.check = func(fd uintptr) bool {
		s.readable = Ready(fd)
		return true // never wait
	}
	return s
}

// Ready reports whether socket fd has bytes (or an end, or an error) to
// read, with a poll(2) that does not wait. It takes nothing from the
// socket: unlike a MSG_PEEK receive, it leaves a pending error (a reset)
// for the read to report.
func Ready(fd uintptr) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds[:], 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0
	}
}

// Readable reports whether the socket has bytes (or an end, or an error)
// to read.
func (s *rawSocket) Readable() bool {
	s.readable = false
	if err := s.rc.Read(s.check); err != nil {
		return true // closed, or a deadline passed: the read reports it
	}
	return s.readable
}
