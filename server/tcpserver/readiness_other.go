//go:build !unix && !windows

package tcpserver

import "syscall"

// waitReadable returns at once on platforms without a readiness wait; the
// read that follows blocks instead, holding its buffer while it waits.
func waitReadable(syscall.RawConn) error { return nil }
