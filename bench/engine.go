package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultDrain is how long calls still in flight at the end of the measured
// window may run before they are cancelled, when Config.Drain is 0.
const DefaultDrain = 10 * time.Second

// maxShards caps the histograms a run allocates: workers beyond it share.
const maxShards = 64

// numCodes is the number of gRPC codes, OK (0) to UNAUTHENTICATED (16).
const numCodes = 17

// Config says how long and how hard to run a load.
type Config struct {
	// Duration is the measured window; it must be positive.
	Duration time.Duration
	// Warmup runs the load before the window; its calls are not measured.
	Warmup time.Duration
	// Count, if positive, ends the window after that many measured calls.
	Count int64
	// Rate, if positive, makes the load open-loop at Rate calls per second
	// in total: call k is due k/Rate seconds after the start and its latency
	// is measured from then, not from when a worker got round to sending it,
	// so a server that stalls cannot hide the queue it causes (no
	// coordinated omission). The workers (or pipeline windows) bound how
	// many calls may be outstanding.
	Rate float64
	// Drain is how long calls in flight when the window ends may still
	// take before they are cancelled; 0 means DefaultDrain.
	Drain time.Duration
	// Progress, if not nil, gets a line per second of the window: calls/s,
	// p50 and p99 over that second, and errors so far.
	Progress io.Writer
	// Snapshot, if not nil, reads the resource counters at the start and at
	// the end of the window; Result.Used is the difference.
	Snapshot func() (Counters, error)
	// Timeline, if not nil, gets a line every TimelineEvery of the window
	// (and one for the rest when the run ends): the Unix time in
	// milliseconds at its end and the calls that completed in it,
	// successfully and not ("1767225600100 98 2"), after a header line
	// that starts with "#". It shows when calls failed and when they
	// succeeded again, around a server's restart for example.
	Timeline io.Writer
	// TimelineEvery is the timeline's interval; 0 means
	// DefaultTimelineEvery.
	TimelineEvery time.Duration
}

// DefaultTimelineEvery is the interval of Config.Timeline's lines when
// Config.TimelineEvery is 0.
const DefaultTimelineEvery = 100 * time.Millisecond

// Counters are cumulative resource counters, read by Config.Snapshot.
type Counters struct {
	// BytesRead and BytesWritten count bytes on the load's connections.
	BytesRead, BytesWritten uint64
	// CPU is this process's user plus system CPU time.
	CPU time.Duration
	// ServerCPU is the server process's user plus system CPU time.
	ServerCPU time.Duration
	// ServerMallocs is the server's cumulative count of heap allocations.
	ServerMallocs uint64
	// Retries counts the calls' attempts after their first (the
	// transport's retries).
	Retries uint64
}

// sub returns c - o.
func (c Counters) sub(o Counters) Counters {
	return Counters{
		BytesRead:     c.BytesRead - o.BytesRead,
		BytesWritten:  c.BytesWritten - o.BytesWritten,
		CPU:           c.CPU - o.CPU,
		ServerCPU:     c.ServerCPU - o.ServerCPU,
		ServerMallocs: c.ServerMallocs - o.ServerMallocs,
		Retries:       c.Retries - o.Retries,
	}
}

// Result is what a run measured in its window.
type Result struct {
	// Latency holds the latencies of the successful measured calls.
	Latency *Histogram
	// Sent counts the measured calls started: with Completed, those still
	// unanswered when the run ended (a stream that broke) are told apart.
	Sent uint64
	// Calls counts the successful measured calls.
	Calls uint64
	// Errors counts the failed measured calls by gRPC code.
	Errors map[codes.Code]uint64
	// FirstErrors holds, for each code in Errors, the message of the
	// first call that failed with it.
	FirstErrors map[codes.Code]string
	// Elapsed is the window's length: from its start until the last
	// measured call completed, and at least Config.Duration unless the
	// count or the caller ended the window first.
	Elapsed time.Duration
	// Used is what the counters of Config.Snapshot advanced by.
	Used Counters
	// SnapshotErr is the first error of Config.Snapshot; Used is then
	// meaningless.
	SnapshotErr error
}

// Completed returns the measured calls that completed, successfully or not.
func (r *Result) Completed() uint64 {
	n := r.Calls
	for _, e := range r.Errors {
		n += e
	}
	return n
}

// shard is the statistics of some of a run's workers.
type shard struct {
	hist Histogram
	errs [numCodes]atomic.Uint64
	ok   atomic.Uint64 // successful calls, counted for Config.Timeline only
}

// countErr counts a failed call.
func (s *shard) countErr(c codes.Code) { s.errs[codeIndex(c)].Add(1) }

// codeIndex returns c, or UNKNOWN for a code past the known ones.
func codeIndex(c codes.Code) codes.Code {
	if c >= numCodes {
		return codes.Unknown
	}
	return c
}

// run is the state one Run shares among its workers. Times are offsets
// from begin on the monotonic clock.
type run struct {
	cfg     Config
	begin   time.Time
	t0, end time.Duration // the measured window
	started atomic.Int64  // measured calls started (and past cfg.Count, refused)
	ticket  atomic.Int64  // the next due call, with cfg.Rate
	shards  []shard
	first   [numCodes]atomic.Pointer[string] // the first failure's message by code

	finished  chan struct{} // closed when the workers are done
	watchDone chan struct{} // closed when watch has returned
	start     Counters      // read at t0 by watch
	startErr  error
	started0  bool // the start snapshot was taken at launch (no warm-up)
}

func newRun(cfg Config, workers int) *run {
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	if cfg.TimelineEvery <= 0 {
		cfg.TimelineEvery = DefaultTimelineEvery
	}
	return &run{
		cfg:       cfg,
		t0:        cfg.Warmup,
		end:       cfg.Warmup + cfg.Duration,
		shards:    make([]shard, min(max(workers, 1), maxShards)),
		finished:  make(chan struct{}),
		watchDone: make(chan struct{}),
	}
}

// shard returns worker w's statistics.
func (r *run) shard(w int) *shard { return &r.shards[w%len(r.shards)] }

// launch starts the clock, the watcher and the drain timer that calls
// cancel, which must cancel the context the calls use. The returned
// function stops the timer.
func (r *run) launch(ctx context.Context, cancel context.CancelFunc) func() bool {
	r.begin = time.Now()
	if r.t0 <= 0 && r.cfg.Snapshot != nil {
		// No warm-up: the window starts now, before any call, not whenever
		// the watcher gets to run.
		r.start, r.startErr = r.cfg.Snapshot()
		r.started0 = true
	}
	go r.watch(ctx)
	return time.AfterFunc(r.end+r.cfg.Drain, cancel).Stop
}

// now returns the time since the run began.
func (r *run) now() time.Duration { return time.Since(r.begin) }

// next claims the next call and returns when it is due; ok is false when the
// run is over: the window has ended, the count is reached or ctx is done.
// A call due before the window is a warm-up call.
func (r *run) next(ctx context.Context) (due time.Duration, ok bool) {
	due = r.now()
	if r.cfg.Rate > 0 {
		k := r.ticket.Add(1) - 1
		due = time.Duration(float64(k) / r.cfg.Rate * float64(time.Second))
	}
	if due >= r.end || ctx.Err() != nil {
		return 0, false
	}
	if due >= r.t0 && r.started.Add(1) > r.cfg.Count && r.cfg.Count > 0 {
		return 0, false
	}
	return due, true
}

// sleepUntil waits until due or until ctx is done and returns the time the
// call starts from. A call whose due time has passed, because every worker
// was busy, starts from its due time: the wait is the server's doing and
// counts. A call its worker sleeps for starts when the worker wakes, which
// Go's timers may make up to a millisecond late: that lateness is the load
// generator's, not the server's, and does not count.
func (r *run) sleepUntil(ctx context.Context, t *time.Timer, due time.Duration) time.Duration {
	d := due - r.now()
	if d <= 0 {
		return due
	}
	t.Reset(d)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	start := max(r.now(), due)
	if due < r.t0 { // a warm-up call stays one
		start = min(start, r.t0-1)
	}
	return start
}

// record accounts a call that was due at due and has just completed with
// err, if it is in the window. Calls ended by the caller's cancellation
// (ctx) are not counted.
func (r *run) record(ctx context.Context, sh *shard, due time.Duration, err error) {
	switch {
	case due < r.t0 || ctx.Err() != nil:
	case err != nil:
		c := codeIndex(status.Code(err))
		sh.countErr(c)
		if r.first[c].Load() == nil {
			msg := status.Convert(err).Message()
			r.first[c].CompareAndSwap(nil, &msg)
		}
	default:
		sh.hist.Record(r.now() - due)
		if r.cfg.Timeline != nil {
			sh.ok.Add(1)
		}
	}
}

// totals returns the successful (with Config.Timeline) and the failed
// measured calls so far.
func (r *run) totals() (ok, failed uint64) {
	for i := range r.shards {
		ok += r.shards[i].ok.Load()
		for c := range r.shards[i].errs {
			failed += r.shards[i].errs[c].Load()
		}
	}
	return ok, failed
}

// merged returns every shard's latencies in one Histogram, and the errors.
func (r *run) merged() (*Histogram, [numCodes]uint64) {
	h := new(Histogram)
	var errs [numCodes]uint64
	for i := range r.shards {
		h.Merge(&r.shards[i].hist)
		for c := range errs {
			errs[c] += r.shards[i].errs[c].Load()
		}
	}
	return h, errs
}

// watch reads the counters when the window starts and then writes the
// progress lines until the workers finish.
func (r *run) watch(ctx context.Context) {
	defer close(r.watchDone)
	t := time.NewTimer(r.t0 - r.now())
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.finished:
		return
	case <-ctx.Done():
		return
	}
	if r.cfg.Snapshot != nil && !r.started0 {
		r.start, r.startErr = r.cfg.Snapshot()
	}
	if r.cfg.Progress == nil && r.cfg.Timeline == nil {
		return
	}
	var tick, line <-chan time.Time // nil: never
	if r.cfg.Progress != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	var tl *timeline
	if r.cfg.Timeline != nil {
		tl = newTimeline(r.cfg.Timeline)
		t := time.NewTicker(r.cfg.TimelineEvery)
		defer t.Stop()
		line = t.C
		defer func() { tl.line(r.totals()) }() // the rest, up to the end
	}
	prev, last := new(Histogram), r.now()
	for {
		select {
		case <-tick:
		case <-line:
			tl.line(r.totals())
			continue
		case <-r.finished:
			return
		case <-ctx.Done():
			return
		}
		cur, errs := r.merged()
		now := r.now()
		d := cur.Sub(prev)
		var nerr uint64
		for _, n := range errs {
			nerr += n
		}
		fmt.Fprintf(r.cfg.Progress, "%5.0fs %12.0f calls/s  p50 %-8s p99 %-8s errors %d\n",
			(now - r.t0).Seconds(), float64(d.Count())/(now-last).Seconds(),
			FormatMicros(Micros(d.Percentile(50))), FormatMicros(Micros(d.Percentile(99))), nerr)
		prev, last = cur, now
	}
}

// finish ends the run and returns its Result; ctx is the run's.
func (r *run) finish(ctx context.Context) *Result {
	close(r.finished)
	<-r.watchDone
	res := &Result{Elapsed: max(r.now()-r.t0, 0), Errors: map[codes.Code]uint64{}, FirstErrors: map[codes.Code]string{}}
	if ctx.Err() == nil && (r.cfg.Count == 0 || r.started.Load() <= r.cfg.Count) {
		// Not ended by the count or the caller: the window is at least its
		// duration, though with a rate the last call may be done before.
		res.Elapsed = max(res.Elapsed, r.cfg.Duration)
	}
	if r.cfg.Snapshot != nil {
		end, err := r.cfg.Snapshot()
		res.Used, res.SnapshotErr = end.sub(r.start), r.startErr
		if res.SnapshotErr == nil {
			res.SnapshotErr = err
		}
	}
	var errs [numCodes]uint64
	res.Latency, errs = r.merged()
	res.Calls = res.Latency.Count()
	res.Sent = uint64(max(r.started.Load(), 0))
	if r.cfg.Count > 0 {
		res.Sent = min(res.Sent, uint64(r.cfg.Count))
	}
	for c, n := range errs {
		if n > 0 {
			res.Errors[codes.Code(c)] = n
			if msg := r.first[c].Load(); msg != nil {
				res.FirstErrors[codes.Code(c)] = *msg
			}
		}
	}
	return res
}

// CallFunc makes one call. A non-nil error counts under its gRPC status
// code (status.Code).
type CallFunc func(ctx context.Context) error

// RunUnary runs workers goroutines, worker w calling newCall(w)'s function
// over and over: each as soon as its previous call returns (closed loop) or,
// with cfg.Rate, when the next call is due. newCall is called before the
// clock starts, so per-worker setup is not measured.
func RunUnary(ctx context.Context, cfg Config, workers int, newCall func(w int) CallFunc) *Result {
	r := newRun(cfg, workers)
	calls := make([]CallFunc, workers)
	for w := range calls {
		calls[w] = newCall(w)
	}
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopDrain := r.launch(ctx, cancel)
	defer stopDrain()
	var wg sync.WaitGroup
	for w, call := range calls {
		sh := r.shard(w)
		wg.Go(func() {
			t := time.NewTimer(time.Hour)
			t.Stop()
			for {
				due, ok := r.next(ctx)
				if !ok {
					return
				}
				start := due
				if r.cfg.Rate > 0 {
					start = r.sleepUntil(ctx, t, due)
				}
				r.record(ctx, sh, start, call(callCtx))
			}
		})
	}
	wg.Wait()
	return r.finish(ctx)
}

// Pipe is one stream of pipelined calls. The engine calls Send, Flush and
// CloseSend from one goroutine and Recv from another.
type Pipe interface {
	// Send sends, or queues for sending, the call identified by id; ids are
	// below the window and the engine reuses an id only after Recv has
	// returned its answer.
	Send(id uint64) error
	// Flush writes whatever Send queued. The engine calls it before it
	// waits, for an answer or for the next call's due time.
	Flush() error
	// Recv returns the next answer: its call's id and codes.OK or the code
	// of the call's failure. A non-nil err ends the stream: io.EOF after
	// CloseSend once every answer has arrived, otherwise a status error.
	Recv() (id uint64, code codes.Code, err error)
	// CloseSend flushes and tells the other end that no call follows.
	CloseSend() error
}

// RunPipelined opens pipes streams with open, which gets a context that is
// cancelled when the run ends, and keeps window calls in flight on each:
// a new call goes out as soon as an answer frees a slot (closed loop) or,
// with cfg.Rate, when it is due and a slot is free.
func RunPipelined(ctx context.Context, cfg Config, pipes, window int, open func(ctx context.Context, i int) (Pipe, error)) (*Result, error) {
	r := newRun(cfg, pipes)
	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ps := make([]Pipe, pipes)
	for i := range ps {
		p, err := open(callCtx, i)
		if err != nil {
			return nil, err
		}
		ps[i] = p
	}
	stopDrain := r.launch(ctx, cancel)
	defer stopDrain()
	var wg sync.WaitGroup
	for i, p := range ps {
		sh := r.shard(i)
		wg.Go(func() { r.pipeline(ctx, p, window, sh) })
	}
	wg.Wait()
	return r.finish(ctx), nil
}

// pipeline drives one Pipe: this goroutine sends, another receives.
func (r *run) pipeline(ctx context.Context, p Pipe, window int, sh *shard) {
	free := make(chan uint64, window) // ids not in flight
	due := make([]atomic.Int64, window)
	for id := range window {
		free <- uint64(id)
		due[id].Store(-1)
	}
	received := make(chan struct{})
	go func() {
		defer close(received)
		for {
			id, code, err := p.Recv()
			if err != nil {
				if err != io.EOF { // the stream broke: count it even in the warm-up
					r.record(ctx, sh, max(r.now(), r.t0), err)
				}
				return
			}
			var d int64 = -1
			if id < uint64(window) {
				d = due[id].Swap(-1)
			}
			if d < 0 {
				r.record(ctx, sh, max(r.now(), r.t0), status.Errorf(codes.Internal, "answer to call %d, which is not in flight", id))
				return
			}
			var cerr error
			if code != codes.OK {
				cerr = status.Error(code, "call failed")
			}
			r.record(ctx, sh, time.Duration(d), cerr)
			free <- id
		}
	}()
	t := time.NewTimer(time.Hour)
	t.Stop()
loop:
	for {
		var id uint64
		select {
		case id = <-free:
		default:
			if p.Flush() != nil {
				break loop
			}
			select {
			case id = <-free:
			case <-received:
				break loop
			case <-ctx.Done():
				break loop
			}
		}
		d, ok := r.next(ctx)
		if !ok {
			break
		}
		if r.cfg.Rate > 0 && d > r.now() {
			if p.Flush() != nil {
				break
			}
			d = r.sleepUntil(ctx, t, d)
		}
		due[id].Store(int64(d))
		if p.Send(id) != nil {
			break
		}
	}
	_ = p.CloseSend()
	<-received
}
