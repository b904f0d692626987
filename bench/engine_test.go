package bench

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// instant is a call that succeeds at once, failing every seventh time with
// OUT_OF_RANGE.
func instant(calls *atomic.Int64) func(int) CallFunc {
	return func(int) CallFunc {
		return func(context.Context) error {
			if calls.Add(1)%7 == 0 {
				return status.Error(codes.OutOfRange, "seventh")
			}
			return nil
		}
	}
}

func TestRunUnaryBounds(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		workers int
		want    uint64 // completed measured calls; 0: just some
	}{
		{"count", Config{Duration: time.Minute, Count: 1000}, 4, 1000},
		{"count after warm-up", Config{Duration: time.Minute, Warmup: 20 * time.Millisecond, Count: 500}, 3, 500},
		{"duration", Config{Duration: 30 * time.Millisecond}, 2, 0},
		// Calls due every millisecond for 100 ms: exactly 100, however
		// the workers keep up.
		{"rate", Config{Duration: 100 * time.Millisecond, Rate: 1000}, 4, 100},
		{"rate after warm-up", Config{Duration: 100 * time.Millisecond, Warmup: 50 * time.Millisecond, Rate: 1000}, 2, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			res := RunUnary(context.Background(), tt.cfg, tt.workers, instant(&calls))
			got := res.Completed()
			if tt.want != 0 && got != tt.want || got == 0 {
				t.Fatalf("completed %d calls, want %d", got, tt.want)
			}
			if res.Calls != res.Latency.Count() {
				t.Fatalf("Calls %d but %d latencies", res.Calls, res.Latency.Count())
			}
			if res.Sent != got {
				t.Fatalf("sent %d calls, completed %d: want every call answered", res.Sent, got)
			}
			if n := res.Errors[codes.OutOfRange]; n == 0 || len(res.Errors) != 1 {
				t.Fatalf("errors %v, want only OUT_OF_RANGE", res.Errors)
			}
			if msg := res.FirstErrors[codes.OutOfRange]; msg != "seventh" || len(res.FirstErrors) != 1 {
				t.Fatalf("first errors %q, want OUT_OF_RANGE's message", res.FirstErrors)
			}
			if tt.cfg.Warmup > 0 && calls.Load() <= int64(got) {
				t.Fatalf("%d calls made, %d measured: the warm-up made none", calls.Load(), got)
			}
			if tt.cfg.Count == 0 && res.Elapsed < tt.cfg.Duration {
				t.Fatalf("elapsed %v, shorter than the duration %v", res.Elapsed, tt.cfg.Duration)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	var n atomic.Uint64
	snap := func() (Counters, error) {
		v := n.Add(1)
		return Counters{BytesRead: 100 * v, BytesWritten: 10 * v, CPU: time.Duration(v) * time.Second, ServerMallocs: 7 * v, Retries: 3 * v}, nil
	}
	var calls atomic.Int64
	res := RunUnary(context.Background(), Config{Duration: time.Minute, Count: 10, Snapshot: snap}, 1, instant(&calls))
	want := Counters{BytesRead: 100, BytesWritten: 10, CPU: time.Second, ServerMallocs: 7, Retries: 3}
	if n.Load() != 2 || res.Used != want || res.SnapshotErr != nil {
		t.Fatalf("%d snapshots, used %+v (%v); want 2, %+v", n.Load(), res.Used, res.SnapshotErr, want)
	}
}

func TestDrainCancels(t *testing.T) {
	hang := func(int) CallFunc {
		return func(ctx context.Context) error {
			<-ctx.Done()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	res := RunUnary(context.Background(), Config{Duration: 10 * time.Millisecond, Drain: 10 * time.Millisecond}, 3, hang)
	if res.Calls != 0 || res.Errors[codes.Canceled] != 3 {
		t.Fatalf("calls %d, errors %v; want 0 and 3 CANCELLED", res.Calls, res.Errors)
	}
}

func TestCallerCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	hang := func(int) CallFunc {
		return func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	res := RunUnary(ctx, Config{Duration: time.Hour}, 2, hang)
	if len(res.Errors) != 0 {
		t.Fatalf("errors %v after the caller cancelled, want none", res.Errors)
	}
}

// fakePipe answers calls when flushed, in reverse order of sending, failing
// ids divisible by 5 with OUT_OF_RANGE.
type fakePipe struct {
	queued  []uint64
	answers chan uint64
	closed  bool
	mu      sync.Mutex
}

func newFakePipe(window int) *fakePipe { return &fakePipe{answers: make(chan uint64, window)} }

func (p *fakePipe) Send(id uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queued = append(p.queued, id)
	return nil
}

func (p *fakePipe) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.Reverse(p.queued)
	for _, id := range p.queued {
		p.answers <- id
	}
	p.queued = p.queued[:0]
	return nil
}

func (p *fakePipe) Recv() (uint64, codes.Code, error) {
	id, ok := <-p.answers
	switch {
	case !ok:
		return 0, codes.OK, io.EOF
	case id%5 == 0:
		return id, codes.OutOfRange, nil
	}
	return id, codes.OK, nil
}

func (p *fakePipe) CloseSend() error {
	_ = p.Flush()
	close(p.answers)
	return nil
}

func TestRunPipelined(t *testing.T) {
	tests := []struct {
		name          string
		cfg           Config
		pipes, window int
		want          uint64
	}{
		{"count", Config{Duration: time.Minute, Count: 5000}, 3, 16, 5000},
		{"count, window 1", Config{Duration: time.Minute, Count: 300, Warmup: 5 * time.Millisecond}, 2, 1, 300},
		{"duration", Config{Duration: 20 * time.Millisecond}, 2, 8, 0},
		{"rate", Config{Duration: 100 * time.Millisecond, Rate: 2000}, 2, 4, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opened := 0
			res, err := RunPipelined(context.Background(), tt.cfg, tt.pipes, tt.window, func(context.Context, int) (Pipe, error) {
				opened++
				return newFakePipe(tt.window), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			got := res.Completed()
			if opened != tt.pipes || tt.want != 0 && got != tt.want || got == 0 {
				t.Fatalf("%d pipes completed %d calls, want %d and %d", opened, got, tt.pipes, tt.want)
			}
			if res.Errors[codes.OutOfRange] == 0 || len(res.Errors) != 1 {
				t.Fatalf("errors %v, want only OUT_OF_RANGE", res.Errors)
			}
			if res.Sent != got {
				t.Fatalf("sent %d calls, completed %d: want every call answered", res.Sent, got)
			}
		})
	}
}

// strayPipe answers a call that was never sent.
type strayPipe struct{ *fakePipe }

func (p *strayPipe) Recv() (uint64, codes.Code, error) { return 1 << 40, codes.OK, nil }

func TestPipelineStrayAnswer(t *testing.T) {
	res, err := RunPipelined(context.Background(), Config{Duration: time.Minute}, 1, 4, func(context.Context, int) (Pipe, error) {
		return &strayPipe{newFakePipe(4)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors[codes.Internal] != 1 {
		t.Fatalf("errors %v, want one INTERNAL", res.Errors)
	}
}
