// Package busypoll holds the policy by which a connection's reader, once it
// has served a burst of several frames, polls its socket for the next burst
// for a few tens of microseconds before it parks on the netpoller.
//
// Parking costs a wake-up: the thread that parks sleeps, and the peer's
// next write must wake it, which on a virtual machine takes 30–50 µs (a
// timeline of one connection at 64 callers on this project's 2-CPU test
// machine showed both ends spending more of each round trip waking than
// working). A reader that yields its processor and checks the socket
// meanwhile sees the peer's next burst within a microsecond or two. This
// is the spin-then-park strategy of Aeron's BackoffIdleStrategy and of
// Go's own scheduler, applied to one socket:
//
//   - a reader polls only after a burst of several calls (the caller
//     decides that): with one call in flight the peer is a round trip
//     away, and polling would only burn the wait;
//   - a poll that ends empty makes its reader skip the next 1, 2, 4, … up
//     to 64 chances to poll, and a poll that finds data resets that, so a
//     reader whose peer does not answer within the poll soon stops
//     spending CPU on it;
//   - a reader polls only while no more readers are busy than half the
//     processors (GOMAXPROCS/2), and never on one processor: a polling
//     goroutine keeps its processor from checking the netpoller, so with
//     more busy connections it would delay their bursts (and they keep
//     the processors from idling anyway), and on one processor the peer
//     it waits for, if local, needs that processor to answer. Who counts
//     as busy is the caller's to say: a server counts its connections
//     that served a burst in the last millisecond, a client its readers
//     with calls in flight.
//
// A peer that keeps sending small bursts just within the poll keeps its
// reader polling, and so can make it spend a processor: no more than
// GOMAXPROCS/2 of them in all.
package busypoll

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Default is how long a reader polls for its next burst when its options
// say 0.
const Default = 50 * time.Microsecond

// Max is the longest a reader polls, whatever it is asked: a poll keeps a
// processor busy, and past a millisecond a wake-up is cheap beside the wait.
const Max = time.Millisecond

// maxSkip is the most chances to poll a reader skips after polls that
// found nothing.
const maxSkip = 64

// Socket tells whether a connection has bytes to read, without reading
// them or waiting.
type Socket interface {
	Readable() bool
}

// Poller is one reader's polling record. Its zero value polls at the next
// chance. It is not safe for concurrent use: it belongs to the goroutine
// that reads.
type Poller struct {
	skip, backoff uint8
}

// Poll yields the processor and checks s, over and over, for at most d
// (and at most Max). It reports whether s became readable. active counts
// the busy readers, the caller included; Poll gives up early, without
// counting the poll as failed, when there are more than half the
// processors. It does not poll at all when d is not positive, when the
// Poller is skipping chances after empty polls, when s is nil, or on one
// processor.
func (p *Poller) Poll(s Socket, d time.Duration, active *atomic.Int32) bool {
	if d <= 0 || s == nil {
		return false
	}
	if p.skip > 0 {
		p.skip--
		return false
	}
	limit := int32(runtime.GOMAXPROCS(0) / 2)
	if limit == 0 || active.Load() > limit {
		return false
	}
	end := time.Now().Add(min(d, Max))
	for {
		runtime.Gosched()
		if active.Load() > limit {
			return false
		}
		if s.Readable() {
			p.backoff = 0
			return true
		}
		if !time.Now().Before(end) {
			break
		}
	}
	p.backoff = min(max(1, 2*p.backoff), maxSkip)
	p.skip = p.backoff
	return false
}
