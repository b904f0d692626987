//go:build unix

package tcpserver

import "syscall"

// waitReadable blocks until rc has bytes to read (or EOF, or an error)
// without reading them, so the caller takes a read buffer only once there is
// something to put in it. The check is a one-byte MSG_PEEK receive; when it
// would block, the runtime parks the goroutine on the netpoller (epoll,
// kqueue) until the socket becomes readable or the read deadline passes.
func waitReadable(rc syscall.RawConn) error {
	if rc == nil {
		return nil
	}
	var peek [1]byte
	return rc.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
		}
	})
}
