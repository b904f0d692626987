//go:build unix

package busypoll

import (
	"net"
	"syscall"
)

// rawSocket peeks at a socket with a one-byte MSG_PEEK|MSG_DONTWAIT
// receive. Its callback is built once, so a check allocates nothing.
type rawSocket struct {
	rc       syscall.RawConn
	peek     [1]byte
	readable bool
	check    func(fd uintptr) bool
}

// NewSocket returns the Socket of nc, or nil when nc is not a socket the
// process can peek at (a TLS connection, whose records the socket's bytes
// are not, or a pipe).
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
		s.readable = Peek(fd, &s.peek)
		return true // never wait
	}
	return s
}

// Peek reports whether socket fd has bytes (or an end, or an error) to
// read, with a one-byte MSG_PEEK|MSG_DONTWAIT receive into b that leaves
// them in the socket.
func Peek(fd uintptr, b *[1]byte) bool {
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EINTR {
			continue
		}
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
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
