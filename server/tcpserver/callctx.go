package tcpserver

import (
	"context"
	"fmt"
	"time"
)

// A call is its handler's context.Context: one allocation where
// context.WithCancel and WithDeadline would take several. Its Done channel,
// the watch on the connection's context and the deadline timer are made
// only if something asks for Done; Err checks the deadline and the
// connection directly. The call's context ends (Canceled) when the call is
// answered, as a gRPC server's does.

// Deadline returns the deadline the client sent, if any.
func (cl *call) Deadline() (time.Time, bool) { return cl.deadline, cl.hasDeadline }

// Value returns the connection context's value for key (the peer, and the
// request's metadata when it has any).
func (cl *call) Value(key any) any { return cl.parent.Value(key) }

// Done returns a channel closed when the call is cancelled, its deadline
// passes or its connection ends.
func (cl *call) Done() <-chan struct{} {
	cl.ctxMu.Lock()
	defer cl.ctxMu.Unlock()
	if cl.done != nil {
		return cl.done
	}
	if cl.err == nil {
		cl.checkLocked() // before done exists: ending the context closes done
	}
	cl.done = make(chan struct{})
	if cl.err != nil {
		close(cl.done)
		return cl.done
	}
	cl.stopParent = context.AfterFunc(cl.parent, func() { cl.endContext(cl.parent.Err()) })
	if cl.hasDeadline {
		cl.timer = time.AfterFunc(time.Until(cl.deadline), func() { cl.endContext(context.DeadlineExceeded) })
	}
	return cl.done
}

// Err returns nil while the call runs, then why it ended. While nothing
// can have ended it (its end, the connection's and its deadline are all
// still ahead) it answers without a lock: a streaming handler asks on
// every message.
func (cl *call) Err() error {
	if !cl.ended.Load() && cl.c.flags.Load()&flagCtxEnding == 0 && (!cl.hasDeadline || time.Now().Before(cl.deadline)) {
		return nil
	}
	cl.ctxMu.Lock()
	defer cl.ctxMu.Unlock()
	if cl.err == nil {
		cl.checkLocked()
	}
	return cl.err
}

// String names the context for debugging.
func (cl *call) String() string { return fmt.Sprintf("tcpserver.call(%d)", cl.id) }

// checkLocked ends the context if its deadline passed or its connection
// ended. Called with ctxMu held.
func (cl *call) checkLocked() {
	switch {
	case cl.hasDeadline && !time.Now().Before(cl.deadline):
		cl.endContextLocked(context.DeadlineExceeded)
	case cl.parent.Err() != nil:
		cl.endContextLocked(cl.parent.Err())
	}
}

// cancel ends the call's context with context.Canceled.
func (cl *call) cancel() { cl.endContext(context.Canceled) }

// endContext ends the call's context with err unless it already ended.
func (cl *call) endContext(err error) {
	cl.ctxMu.Lock()
	defer cl.ctxMu.Unlock()
	cl.endContextLocked(err)
}

func (cl *call) endContextLocked(err error) {
	if cl.err != nil {
		return
	}
	cl.err = err
	cl.ended.Store(true)
	if cl.done != nil {
		close(cl.done)
	}
	if cl.stopParent != nil {
		cl.stopParent()
	}
	if cl.timer != nil {
		cl.timer.Stop()
	}
}

var _ context.Context = (*call)(nil)
