package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// maxRelErr is the precision the histogram promises: a bucket's midpoint is
// within 1/128 of any value in the bucket.
const maxRelErr = 1.0 / 128

// exactPercentile is the nearest-rank percentile of sorted values.
func exactPercentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestBuckets(t *testing.T) {
	prevLow, prevWidth := uint64(0), uint64(1)
	for i := 1; i < numBuckets; i++ {
		low, width := bucketRange(i)
		if low != prevLow+prevWidth {
			t.Fatalf("bucket %d starts at %d, want %d (gap or overlap)", i, low, prevLow+prevWidth)
		}
		for _, v := range []uint64{low, low + width/2, low + width - 1} {
			if got := bucketOf(v); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		if low >= 1<<subBits && float64(width)/float64(low) > 1.0/halfSub {
			t.Fatalf("bucket %d: width %d is more than 1/%d of %d", i, width, halfSub, low)
		}
		prevLow, prevWidth = low, width
	}
	if got := bucketOf(math.MaxUint64); got != numBuckets-1 {
		t.Fatalf("bucketOf(max) = %d, want the last bucket %d", got, numBuckets-1)
	}
}

func TestPercentileAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform 0-1ms", func() time.Duration { return time.Duration(rng.Int64N(int64(time.Millisecond))) }},
		{"exponential mean 50µs", func() time.Duration { return time.Duration(rng.ExpFloat64() * 50e3) }},
		{"lognormal wide", func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()*2 + 11)) }},
		{"small exact values", func() time.Duration { return time.Duration(rng.IntN(200)) }},
		{"bimodal with tail", func() time.Duration {
			if rng.IntN(100) == 0 {
				return time.Duration(rng.Int64N(int64(50 * time.Millisecond)))
			}
			return 30*time.Microsecond + time.Duration(rng.Int64N(20e3))
		}},
		{"constant", func() time.Duration { return 123456 * time.Nanosecond }},
	}
	percentiles := []float64{0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			vals := make([]time.Duration, 100000)
			var sum time.Duration
			for i := range vals {
				vals[i] = tt.gen()
				sum += vals[i]
				h.Record(vals[i])
			}
			slices.Sort(vals)
			if h.Count() != uint64(len(vals)) {
				t.Fatalf("Count = %d, want %d", h.Count(), len(vals))
			}
			if h.Min() != vals[0] || h.Max() != vals[len(vals)-1] {
				t.Errorf("Min, Max = %v, %v; want %v, %v", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
			}
			if want := sum / time.Duration(len(vals)); h.Mean() != want {
				t.Errorf("Mean = %v, want %v", h.Mean(), want)
			}
			for _, p := range percentiles {
				got, want := h.Percentile(p), exactPercentile(vals, p)
				if diff := math.Abs(float64(got - want)); diff > maxRelErr*float64(want)+0.5 {
					t.Errorf("p%v = %v, exact %v: off by %.2f%%", p, got, want, 100*diff/float64(want))
				}
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	var h Histogram
	if h.Count() != 0 || h.Percentile(50) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatalf("empty histogram: count %d p50 %v min %v max %v mean %v", h.Count(), h.Percentile(50), h.Min(), h.Max(), h.Mean())
	}
	h.Record(-5)
	if h.Count() != 1 || h.Max() != 0 || h.Min() != 0 {
		t.Fatalf("negative value: count %d min %v max %v, want 1, 0, 0", h.Count(), h.Min(), h.Max())
	}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name  string
		parts [][]time.Duration
	}{
		{"disjoint ranges", [][]time.Duration{{1, 2, 3}, {1000, 2000}, {5 * time.Second}}},
		{"one empty", [][]time.Duration{{}, {10, 20, 30}}},
		{"all empty", [][]time.Duration{{}, {}}},
		{"overlapping", [][]time.Duration{{100, 200, 300}, {150, 250, 350}, {100}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var merged, direct Histogram
			for _, part := range tt.parts {
				var h Histogram
				for _, v := range part {
					h.Record(v)
					direct.Record(v)
				}
				merged.Merge(&h)
			}
			if merged.Count() != direct.Count() || merged.Min() != direct.Min() || merged.Max() != direct.Max() || merged.Mean() != direct.Mean() {
				t.Fatalf("merged count/min/max/mean %d %v %v %v, direct %d %v %v %v", merged.Count(), merged.Min(), merged.Max(), merged.Mean(),
					direct.Count(), direct.Min(), direct.Max(), direct.Mean())
			}
			for _, p := range []float64{0, 25, 50, 90, 100} {
				if merged.Percentile(p) != direct.Percentile(p) {
					t.Errorf("p%v: merged %v, direct %v", p, merged.Percentile(p), direct.Percentile(p))
				}
			}
		})
	}
}

func TestSub(t *testing.T) {
	var h Histogram
	for v := range 1000 {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	prev := new(Histogram)
	prev.Merge(&h)
	for range 500 {
		h.Record(5 * time.Millisecond)
	}
	d := h.Sub(prev)
	if d.Count() != 500 {
		t.Fatalf("Sub count = %d, want 500", d.Count())
	}
	if got := d.Percentile(50); math.Abs(float64(got-5*time.Millisecond)) > maxRelErr*float64(5*time.Millisecond) {
		t.Fatalf("Sub p50 = %v, want about 5ms", got)
	}
	if d.Mean() != 5*time.Millisecond {
		t.Fatalf("Sub mean = %v, want 5ms", d.Mean())
	}
}

// TestConcurrentRecord records from many goroutines while another reads,
// for the race detector, and checks nothing is lost.
func TestConcurrentRecord(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10000 {
				h.Record(time.Duration(g*10000 + i))
			}
		})
	}
	stop := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			select {
			case <-stop:
				return
			default:
				_ = h.Percentile(99)
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-read
	if h.Count() != 80000 || h.Min() != 0 || h.Max() != 79999 {
		t.Fatalf("count %d min %v max %v, want 80000, 0, 79999", h.Count(), h.Min(), h.Max())
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i & 0xfffff))
	}
}
