//go:build !unix && !windows

package tcpserver

import "syscall"

// readiness is a no-op on platforms without a readiness wait: the read that
// follows blocks instead, holding its buffer while it waits.
type readiness struct{}

func newReadiness(syscall.RawConn) *readiness { return &readiness{} }

// wait returns at once.
func (*readiness) wait() error { return nil }
