package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram is log-linear, as HdrHistogram is: values below 2^subBits
// nanoseconds get a bucket each, and every power of two above that is split
// into 2^(subBits-1) equal buckets. A bucket is then at most 1/64 of its
// lower bound wide, and a reported value, the bucket's midpoint, is within
// 0.8% of every value the bucket holds.
const (
	subBits  = 7
	halfSub  = 1 << (subBits - 1)
	maxShift = 40 - subBits // values are clamped below 2^40 ns, about 18 minutes
	// numBuckets covers every value up to maxValue.
	numBuckets = (maxShift+1)*halfSub + halfSub
	maxValue   = 1<<40 - 1
)

// Histogram is a latency histogram with fixed memory (about 18 KiB) and a
// few per mille relative error. Record uses only atomic adds, so any number
// of goroutines may record into one Histogram while another reads it, with
// no lock. The zero value is empty and ready to use.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
	minInv atomic.Uint64 // ^min, so that the zero value means "no minimum yet"
	max    atomic.Uint64
}

// bucketOf returns the bucket holding v nanoseconds.
func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	if v > maxValue {
		v = maxValue
	}
	s := bits.Len64(v) - subBits
	return s*halfSub + int(v>>s)
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (low, width uint64) {
	if i < 1<<subBits {
		return uint64(i), 1
	}
	s := i/halfSub - 1
	return uint64(i-s*halfSub) << s, 1 << s
}

// Record adds one latency. Negative values count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.sum.Add(v)
	for m := h.max.Load(); v > m && !h.max.CompareAndSwap(m, v); m = h.max.Load() {
	}
	for m := h.minInv.Load(); ^v > m && !h.minInv.CompareAndSwap(m, ^v); m = h.minInv.Load() {
	}
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if n := o.counts[i].Load(); n != 0 {
			h.counts[i].Add(n)
		}
	}
	h.sum.Add(o.sum.Load())
	for m, v := h.max.Load(), o.max.Load(); v > m && !h.max.CompareAndSwap(m, v); m = h.max.Load() {
	}
	for m, v := h.minInv.Load(), o.minInv.Load(); v > m && !h.minInv.CompareAndSwap(m, v); m = h.minInv.Load() {
	}
}

// Sub returns what was recorded in h since prev, an earlier copy of it (from
// Merge into an empty Histogram). Its minimum and maximum are the bounds of
// its lowest and highest non-empty buckets.
func (h *Histogram) Sub(prev *Histogram) *Histogram {
	d := new(Histogram)
	first, last := -1, -1
	for i := range h.counts {
		n := h.counts[i].Load() - prev.counts[i].Load()
		if n == 0 {
			continue
		}
		d.counts[i].Store(n)
		if first < 0 {
			first = i
		}
		last = i
	}
	d.sum.Store(h.sum.Load() - prev.sum.Load())
	if first >= 0 {
		low, _ := bucketRange(first)
		d.minInv.Store(^low)
		low, width := bucketRange(last)
		d.max.Store(low + width - 1)
	}
	return d
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Min returns the smallest value recorded, or 0 if there is none.
func (h *Histogram) Min() time.Duration {
	m := h.minInv.Load()
	if m == 0 {
		return 0
	}
	return time.Duration(^m)
}

// Max returns the largest value recorded, or 0 if there is none.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the mean of the values recorded, or 0 if there is none.
func (h *Histogram) Mean() time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Percentile returns the value below or at which p percent of the recorded
// values lie (0 <= p <= 100), to within the histogram's precision: the
// midpoint of the bucket holding it, clamped to the recorded minimum and
// maximum. It returns 0 for an empty histogram.
func (h *Histogram) Percentile(p float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, width := bucketRange(i)
			v := time.Duration(low + (width-1)/2)
			return min(max(v, h.Min()), h.Max())
		}
	}
	return h.Max()
}
