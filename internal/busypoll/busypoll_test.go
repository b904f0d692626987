package busypoll

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSocket turns readable at its after-th check (never if after is 0).
type fakeSocket struct{ checks, after int }

func (s *fakeSocket) Readable() bool {
	s.checks++
	return s.after > 0 && s.checks >= s.after
}

func TestPollFindsData(t *testing.T) {
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
	crowd := int32(max(1, runtime.GOMAXPROCS(0)/2) + 1)
	for _, tc := range []struct {
		name   string
		s      Socket
		d      time.Duration
		active int32
	}{
		{"no socket", nil, time.Second, 1},
		{"zero duration", &fakeSocket{after: 1}, 0, 1},
		{"negative duration", &fakeSocket{after: 1}, -time.Second, 1},
		{"more readers than half the processors", &fakeSocket{after: 1}, time.Second, crowd},
	} {
		t.Run(tc.name, func(t *testing.T) {
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

// TestSocket checks NewSocket on a real loopback connection: not readable
// while nothing is sent, readable once bytes arrive (which it does not
// consume), and readable at the peer's close.
func TestSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()
	s := NewSocket(server)
	if s == nil {
		t.Skip("no socket polling on this platform")
	}
	if s.Readable() {
		t.Fatal("Readable = true before anything was sent")
	}
	if _, err := client.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, s)
	buf := make([]byte, 2)
	if _, err := server.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v after Readable; want the bytes it peeked at", buf, err)
	}
	if s.Readable() {
		t.Fatal("Readable = true with every byte read")
	}
	client.Close()
	waitReadable(t, s)
}

func waitReadable(t *testing.T, s Socket) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !s.Readable(); {
		if time.Now().After(deadline) {
			t.Fatal("Readable still false after 10s")
		}
		time.Sleep(time.Millisecond)
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
