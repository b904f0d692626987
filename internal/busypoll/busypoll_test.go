package busypoll

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// twoProcs makes the test run with at least 2 processors, the fewest a
// Poller polls on, whatever machine runs it.
func twoProcs(t *testing.T) {
	if n := runtime.GOMAXPROCS(0); n < 2 {
		runtime.GOMAXPROCS(2)
		t.Cleanup(func() { runtime.GOMAXPROCS(n) })
	}
}

// fakeSocket turns readable at its after-th check (never if after is 0).
type fakeSocket struct{ checks, after int }

func (s *fakeSocket) Readable() bool {
	s.checks++
	return s.after > 0 && s.checks >= s.after
}

func TestPollFindsData(t *testing.T) {
	twoProcs(t)
	var p Poller
	var active atomic.Int32
	active.Store(1)
	s := &fakeSocket{after: 3}
	if !p.Poll(s, time.Second, &active) {
		t.Fatal("Poll = false, want true: the socket turned readable at its third check")
	}
	if s.checks != 3 {
		t.Errorf("checks = %d, want 3: Poll stops at the first readable check", s.checks)
	}
}

// TestPollBacksOff checks the skips after empty polls (1, 2, 4, … 64) and
// that a poll that finds data resets them.
func TestPollBacksOff(t *testing.T) {
	twoProcs(t)
	var p Poller
	var active atomic.Int32
	active.Store(1)
	empty := &fakeSocket{}
	for _, wantSkips := range []int{1, 2, 4, 8, 16, 32, 64, 64} {
		if p.Poll(empty, time.Microsecond, &active) {
			t.Fatal("Poll = true on a socket that never turns readable")
		}
		before := empty.checks
		for i := range wantSkips {
			if p.Poll(empty, time.Second, &active) {
				t.Fatal("Poll = true while skipping")
			}
			if empty.checks != before {
				t.Fatalf("skip %d of %d checked the socket", i+1, wantSkips)
			}
		}
	}
	if !p.Poll(&fakeSocket{after: 1}, time.Second, &active) {
		t.Fatal("Poll = false after the skips, on a readable socket")
	}
	if p.Poll(empty, time.Microsecond, &active) || p.skip != 1 {
		t.Errorf("after a poll that found data, an empty poll set skip %d, want 1", p.skip)
	}
}

func TestPollDoesNot(t *testing.T) {
	twoProcs(t)
	crowd := int32(runtime.GOMAXPROCS(0)/2 + 1)
	for _, tc := range []struct {
		name   string
		s      Socket
		d      time.Duration
		active int32
		procs  int // GOMAXPROCS for the case; 0: as it is
	}{
		{"no socket", nil, time.Second, 1, 0},
		{"zero duration", &fakeSocket{after: 1}, 0, 1, 0},
		{"negative duration", &fakeSocket{after: 1}, -time.Second, 1, 0},
		{"more readers than half the processors", &fakeSocket{after: 1}, time.Second, crowd, 0},
		{"one processor", &fakeSocket{after: 1}, time.Second, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.procs > 0 {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(tc.procs))
			}
			var p Poller
			var active atomic.Int32
			active.Store(tc.active)
			if p.Poll(tc.s, tc.d, &active) {
				t.Error("Poll = true, want false")
			}
			if fs, ok := tc.s.(*fakeSocket); ok && fs.checks != 0 {
				t.Errorf("the socket was checked %d times", fs.checks)
			}
			if p.skip != 0 {
				t.Errorf("skip = %d: a poll not made must not back off", p.skip)
			}
		})
	}
}

// crowdingSocket is never readable and, at its first check, makes the
// readers too many.
type crowdingSocket struct {
	active *atomic.Int32
	checks int
}

func (s *crowdingSocket) Readable() bool {
	s.checks++
	s.active.Store(int32(runtime.GOMAXPROCS(0) + 1))
	return false
}

// TestPollYieldsToCrowd checks that a poll stops as soon as more readers
// are active, without backing off: it was cut short, not empty.
func TestPollYieldsToCrowd(t *testing.T) {
	twoProcs(t)
	var p Poller
	var active atomic.Int32
	active.Store(1)
	s := &crowdingSocket{active: &active}
	if p.Poll(s, time.Minute, &active) {
		t.Fatal("Poll = true")
	}
	if s.checks != 1 || p.skip != 0 {
		t.Errorf("checks = %d, skip = %d; want 1 and 0", s.checks, p.skip)
	}
}

func TestNewSocketNotASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if s := NewSocket(a); s != nil {
		t.Errorf("NewSocket(net.Pipe) = %v, want nil", s)
	}
}

// TestPollAtMostMax: a poll asked for an hour ends after about Max.
func TestPollAtMostMax(t *testing.T) {
	twoProcs(t)
	var p Poller
	var active atomic.Int32
	active.Store(1)
	done := make(chan bool)
	go func() { done <- p.Poll(&fakeSocket{}, time.Hour, &active) }()
	select {
	case found := <-done:
		if found {
			t.Error("Poll = true on a socket that never turns readable")
		}
	case <-time.After(time.Minute):
		t.Fatal("a poll asked for an hour still ran after a minute (Max is 1ms)")
	}
}
