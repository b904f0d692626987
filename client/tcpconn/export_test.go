package tcpconn

import "testing"

// SetCallerReads turns off (or back on) a lone caller's reading of its own
// answer until the test or benchmark ends.
func SetCallerReads(tb testing.TB, on bool) {
	callerReads = on
	tb.Cleanup(func() { callerReads = true })
}
