//go:build unix

package bench

import (
	"net"
	"syscall"
)

// countClosed counts the connections of conns (nil: never opened) that
// the peer or the kernel has closed: a receive that would block means
// open and quiet, and no goroutine or deadline is involved.
func countClosed(conns []net.Conn) int {
	closed := 0
	var b [1]byte
	for _, nc := range conns {
		sc, ok := nc.(syscall.Conn)
		if !ok {
			continue
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			closed++
			continue
		}
		open := false
		_ = rc.Control(func(fd uintptr) {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			open = n > 0 || err == syscall.EAGAIN
		})
		if !open {
			closed++
		}
	}
	return closed
}
