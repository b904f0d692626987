//go:build !unix && !windows

package tcpserver

import (
	"syscall"

	"github.com/calcrpc/calc/internal/busypoll"
)

// readiness is a no-op on platforms without a readiness wait: the
// connection waits in a read instead (awaitReadable), holding its buffer.
type readiness struct{}

func newReadiness(syscall.RawConn) *readiness { return &readiness{} }

// canWait reports false: the caller waits in a read.
func (*readiness) canWait() bool { return false }

// wait returns at once.
func (*readiness) wait() error { return nil }

// socket returns nil: connections here do not busy-poll.
func (*readiness) socket() busypoll.Socket { return nil }
