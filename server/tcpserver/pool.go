package tcpserver

import (
	"fmt"
	"runtime"
	"sync"
)

// Dispatch is where a Server runs its unary handlers: the three engine
// models BENCHMARKS.md measures side by side. Streams run in a goroutine
// of their own under every model: a stream's handler blocks in RecvMsg
// for the stream's whole life, and on a bounded pool as many open streams
// as workers would starve every other call.
type Dispatch int

const (
	// DispatchInline runs the unary calls of Options.InlineMethods on
	// their connection's goroutine, and other unary calls in a goroutine
	// each (a method that may block must not hold its connection). It is
	// the zero value.
	DispatchInline Dispatch = iota
	// DispatchGoroutine runs every unary call in a goroutine of its own;
	// InlineMethods is ignored.
	DispatchGoroutine
	// DispatchPool runs every unary call on a server-wide pool of at most
	// Options.Workers goroutines, fed by a queue of Options.QueueSize
	// calls: the seed's thread pool. A connection whose call finds the
	// queue full waits, reading nothing, until a worker takes one
	// (backpressure). InlineMethods is ignored.
	DispatchPool
)

// dispatchNames are the names String and ParseDispatch use.
var dispatchNames = [...]string{DispatchInline: "inline", DispatchGoroutine: "goroutine", DispatchPool: "pool"}

// String returns the model's name: inline, goroutine or pool.
func (d Dispatch) String() string {
	if d >= 0 && int(d) < len(dispatchNames) {
		return dispatchNames[d]
	}
	return fmt.Sprintf("Dispatch(%d)", int(d))
}

// ParseDispatch returns the model named s: inline, goroutine or pool.
func ParseDispatch(s string) (Dispatch, error) {
	for d, name := range dispatchNames {
		if s == name {
			return Dispatch(d), nil
		}
	}
	return 0, fmt.Errorf("tcpserver: unknown dispatch model %q (want inline, goroutine or pool)", s)
}

// DefaultQueueSize is the pool's queue length when Options.QueueSize is 0.
const DefaultQueueSize = 1024

// defaultWorkers is the pool's size when Options.Workers is 0: one worker
// per CPU Go runs on, the seed's thread pool's size for CPU-bound work.
func defaultWorkers() int { return runtime.GOMAXPROCS(0) }

// pool is DispatchPool's bounded worker pool. Workers start as calls
// arrive, up to max, and wait for more when the queue is empty; stop ends
// them once the queue has drained. A call submitted after stop runs in a
// goroutine of its own, so no call is ever stranded.
type pool struct {
	max, queueSize int

	mu      sync.Mutex
	work    sync.Cond // signalled when a call is queued, or on stop
	space   sync.Cond // signalled when a worker takes a call, or on stop
	queue   []*call   // a ring of queueSize calls
	head, n int
	workers int // running
	idle    int // running and waiting for work
	stopped bool
}

func newPool(workers, queueSize int) *pool {
	p := &pool{max: workers, queueSize: queueSize, queue: make([]*call, queueSize)}
	p.work.L, p.space.L = &p.mu, &p.mu
	return p
}

// submit queues cl for a worker, waiting while the queue is full.
func (p *pool) submit(cl *call) {
	p.mu.Lock()
	for p.n == p.queueSize && !p.stopped {
		p.space.Wait()
	}
	if p.stopped {
		p.mu.Unlock()
		go cl.runUnary()
		return
	}
	p.queue[(p.head+p.n)%p.queueSize] = cl
	p.n++
	switch {
	case p.idle > 0:
		p.work.Signal()
	case p.workers < p.max:
		p.workers++
		go p.worker()
	}
	p.mu.Unlock()
}

// worker runs queued calls until stop, and the queue is empty.
func (p *pool) worker() {
	p.mu.Lock()
	for {
		for p.n == 0 && !p.stopped {
			p.idle++
			p.work.Wait()
			p.idle--
		}
		if p.n == 0 {
			p.workers--
			p.mu.Unlock()
			return
		}
		cl := p.queue[p.head]
		p.queue[p.head] = nil
		p.head = (p.head + 1) % p.queueSize
		p.n--
		p.space.Signal()
		p.mu.Unlock()
		cl.runUnary()
		p.mu.Lock()
	}
}

// stop makes the workers end once they have run every queued call. It
// does not wait for them: a handler that ignores its context's end may
// keep one running.
func (p *pool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.work.Broadcast()
	p.space.Broadcast()
	p.mu.Unlock()
}
