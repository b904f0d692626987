//go:build windows

package tcpserver

import "syscall"

// waitReadable blocks until rc has bytes to read without reading them. On
// Windows the runtime answers a RawConn.Read callback that reports "not
// ready" with a zero-byte overlapped WSARecv on the IOCP, which completes
// once data has arrived: the form of IOCP's classic zero-byte read that
// keeps an idle connection free of buffers.
func waitReadable(rc syscall.RawConn) error {
	if rc == nil {
		return nil
	}
	waited := false
	return rc.Read(func(uintptr) bool {
		if waited {
			return true
		}
		waited = true
		return false
	})
}
