package bench

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// TimelineHeader is the first line of a Config.Timeline.
const TimelineHeader = "# unix_ms ok failed: calls completed in the interval ending at unix_ms"

// timeline writes a run's Config.Timeline: the calls completed in each
// interval, from the cumulative totals it is given. Write errors are the
// writer's to keep (a bufio.Writer does).
type timeline struct {
	w          io.Writer
	now        func() time.Time
	ok, failed uint64 // the totals at the last line
}

func newTimeline(w io.Writer) *timeline {
	fmt.Fprintln(w, TimelineHeader)
	return &timeline{w: w, now: time.Now}
}

// line writes the line of the interval ending now, in which the totals
// went from the last line's to ok and failed.
func (t *timeline) line(ok, failed uint64) {
	fmt.Fprintf(t.w, "%d %d %d\n", t.now().UnixMilli(), ok-t.ok, failed-t.failed)
	t.ok, t.failed = ok, failed
}

// WithRetries returns a Config.Snapshot that reads snap's counters (none
// if snap is nil) and sets their Retries to *retries, the transport's
// cumulative count of retries (calc-bench counts them with
// dial.Config.OnRetry).
func WithRetries(snap func() (Counters, error), retries *atomic.Uint64) func() (Counters, error) {
	return func() (Counters, error) {
		var c Counters
		var err error
		if snap != nil {
			c, err = snap()
		}
		c.Retries = retries.Load()
		return c, err
	}
}
