package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestTimelineLine writes lines from cumulative totals: each holds the
// calls of its own interval.
func TestTimelineLine(t *testing.T) {
	var b bytes.Buffer
	tl := newTimeline(&b)
	at := time.UnixMilli(1767225600000)
	tl.now = func() time.Time { return at }
	tl.line(10, 1)
	at = at.Add(100 * time.Millisecond)
	tl.line(25, 1)
	at = at.Add(100 * time.Millisecond)
	tl.line(25, 4)
	want := TimelineHeader + "\n1767225600000 10 1\n1767225600100 15 0\n1767225600200 0 3\n"
	if b.String() != want {
		t.Fatalf("timeline\n%s\nwant\n%s", b.String(), want)
	}
}

// parseTimeline parses a timeline's lines after its header.
func parseTimeline(t *testing.T, s string) (ms []int64, ok, failed []uint64) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(s))
	if !sc.Scan() || sc.Text() != TimelineHeader {
		t.Fatalf("timeline starts %q, want the header", sc.Text())
	}
	for sc.Scan() {
		var m int64
		var o, f uint64
		if n, err := fmt.Sscanf(sc.Text(), "%d %d %d", &m, &o, &f); n != 3 || err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		ms, ok, failed = append(ms, m), append(ok, o), append(failed, f)
	}
	return ms, ok, failed
}

// TestRunTimeline runs calls at a fixed rate with a timeline: its lines
// are in time order within the run and add up to the result's calls and
// errors, unary and pipelined.
func TestRunTimeline(t *testing.T) {
	runs := map[string]func(cfg Config) *Result{
		"unary": func(cfg Config) *Result {
			var calls atomic.Int64
			return RunUnary(context.Background(), cfg, 4, instant(&calls))
		},
		"pipelined": func(cfg Config) *Result {
			res, err := RunPipelined(context.Background(), cfg, 2, 4, func(context.Context, int) (Pipe, error) { return newFakePipe(4), nil })
			if err != nil {
				t.Fatal(err)
			}
			return res
		},
	}
	for name, run := range runs {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			before := time.Now().UnixMilli()
			res := run(Config{Duration: 300 * time.Millisecond, Rate: 1000, Timeline: &b, TimelineEvery: 50 * time.Millisecond})
			after := time.Now().UnixMilli()
			ms, ok, failed := parseTimeline(t, b.String())
			if len(ms) < 2 {
				t.Fatalf("%d lines, want one per interval and one at the end:\n%s", len(ms), b.String())
			}
			var sumOK, sumFailed uint64
			for i := range ms {
				if ms[i] < before || ms[i] > after || i > 0 && ms[i] < ms[i-1] {
					t.Fatalf("line %d at %d, outside the run [%d, %d] or before the last:\n%s", i, ms[i], before, after, b.String())
				}
				sumOK += ok[i]
				sumFailed += failed[i]
			}
			if sumOK != res.Calls || sumFailed != res.Completed()-res.Calls || res.Errors[codes.OutOfRange] != sumFailed {
				t.Fatalf("timeline ok %d failed %d; result %d calls, errors %v", sumOK, sumFailed, res.Calls, res.Errors)
			}
		})
	}
}

// TestWithRetries reads the retry count into the counters, with and
// without other counters to read, and a run reports its difference.
func TestWithRetries(t *testing.T) {
	var retries atomic.Uint64
	retries.Store(5)
	c, err := WithRetries(nil, &retries)()
	if err != nil || c != (Counters{Retries: 5}) {
		t.Fatalf("WithRetries(nil) read %+v, %v", c, err)
	}
	snap := WithRetries(func() (Counters, error) { return Counters{BytesRead: 9}, nil }, &retries)
	if c, err := snap(); err != nil || c != (Counters{BytesRead: 9, Retries: 5}) {
		t.Fatalf("WithRetries read %+v, %v", c, err)
	}
	retrying := func(int) CallFunc {
		return func(context.Context) error {
			retries.Add(2) // each call retried twice
			return nil
		}
	}
	res := RunUnary(context.Background(), Config{Duration: time.Minute, Count: 10, Snapshot: snap}, 1, retrying)
	if res.Used.Retries != 20 || res.Sent != 10 {
		t.Fatalf("retries %d, sent %d; want 20 and 10", res.Used.Retries, res.Sent)
	}
}
