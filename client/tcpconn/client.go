package tcpconn

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	calcbackoff "github.com/calcrpc/calc/internal/backoff"
)

// DefaultResolveInterval is how often a Client resolves a dns:/// target
// again, besides after every lost connection and failed connection attempt.
const DefaultResolveInterval = 30 * time.Second

// DefaultMaxAttempts bounds the attempts a Client makes of one call.
const DefaultMaxAttempts = 5

// Balancer chooses, among a Client's READY sub-connections, the one a call
// goes to.
type Balancer int

const (
	// RoundRobin takes the READY sub-connections in turn.
	RoundRobin Balancer = iota
	// PowerOfTwoChoices takes, of two READY sub-connections picked at
	// random, the one with fewer calls in flight.
	PowerOfTwoChoices
)

// ClientOptions configures a Client. The zero value means the documented
// defaults.
type ClientOptions struct {
	// Conn configures every sub-connection, except that its
	// TracerProvider and interceptors observe each call once, at the
	// Client, around its attempts: the span names the server of the last
	// attempt.
	Conn Options
	// Balancer chooses the sub-connection of each call; the zero value is
	// RoundRobin.
	Balancer Balancer
	// Backoff spaces the connection attempts to one endpoint as gRPC's
	// connection backoff does; its zero fields take backoff.DefaultConfig's
	// values: 1 s base delay, multiplier 1.6, jitter 0.2, 120 s at most.
	// Any positive values are accepted: loopback tests use milliseconds.
	Backoff backoff.Config
	// MinConnectTimeout is the least time one connection attempt,
	// handshake included, is given; 0 means DefaultMinConnectTimeout.
	MinConnectTimeout time.Duration
	// ResolveInterval is how often a dns:/// target is resolved again
	// while nothing else asks for it; 0 means DefaultResolveInterval.
	ResolveInterval time.Duration
	// LookupHost resolves a dns:/// target's host to IP addresses; nil
	// means net.DefaultResolver.LookupHost.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Dial opens the socket to an endpoint's HOST:PORT; nil means a
	// net.Dialer's DialContext.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// WaitForReady makes every call that finds no READY sub-connection
	// wait for one until its deadline, as grpc.WaitForReady(true) does for
	// one call (a call's own grpc.WaitForReady option wins). Without it a
	// call fails fast with UNAVAILABLE when every endpoint is in
	// TRANSIENT_FAILURE, and waits only while one is CONNECTING.
	WaitForReady bool
	// RetryIdempotent retries a unary call that failed with UNAVAILABLE
	// although the server may have processed it (its connection was lost,
	// or the server ended it while shutting down), spaced by RetryBackoff,
	// within the call's deadline and MaxAttempts. Set it only when every
	// unary method called through the Client is idempotent, as calc's
	// are. Streams are never retried once opened.
	RetryIdempotent bool
	// RetryBackoff spaces those retries; its zero fields take 100 ms base
	// delay, multiplier 1.6, jitter 0.2, 1 s at most.
	RetryBackoff backoff.Config
	// MaxAttempts bounds the attempts of one call, retries of calls the
	// server never processed included; 0 means DefaultMaxAttempts.
	MaxAttempts int
	// OnRetry, if not nil, is called before every attempt of a call after
	// its first (a retry, for either reason above), with the call's
	// context and method, from the calling goroutine: calc-bench counts
	// retries with it.
	OnRetry func(ctx context.Context, method string)
}

// Client is a small load balancer over raw TCP connections (Conn), one
// per endpoint of its target, which it keeps connected. It implements
// grpc.ClientConnInterface and is safe for concurrent use.
type Client struct {
	target     target
	opts       ClientOptions
	ctx        context.Context // ends at Close
	cancel     context.CancelFunc
	wg         sync.WaitGroup // the resolver and sub-connection goroutines
	resolveNow chan struct{}
	obs        observers               // the interceptors and tracer of opts.Conn
	ready      atomic.Pointer[[]ready] // the READY sub-connections
	next       atomic.Uint32           // round robin's counter

	mu      sync.Mutex
	closed  bool
	subs    []*subConn // in the resolver's order
	state   connectivity.State
	changed chan struct{} // closed at the next change of state
	lastErr error         // the last connection or resolution failure
}

// ready is a READY sub-connection with its connection.
type ready struct {
	sc   *subConn
	conn *Conn
}

// errClosed fails the calls made after Close.
var errClosed = status.Error(codes.Canceled, "tcpconn: client closed")

// NewClient returns a Client for target, which is HOST:PORT, a
// comma-separated list of them, or dns:///HOST:PORT, whose host is
// resolved to every address it has. It starts connecting to every
// endpoint at once and returns without waiting (WaitReady waits); only a
// malformed target is an error (INVALID_ARGUMENT).
func NewClient(target string, opts ClientOptions) (*Client, error) {
	t, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	opts.Backoff = calcbackoff.WithDefaults(opts.Backoff, backoff.DefaultConfig)
	opts.RetryBackoff = calcbackoff.WithDefaults(opts.RetryBackoff, calcbackoff.Retry)
	if opts.MinConnectTimeout <= 0 {
		opts.MinConnectTimeout = DefaultMinConnectTimeout
	}
	if opts.ResolveInterval <= 0 {
		opts.ResolveInterval = DefaultResolveInterval
	}
	if opts.LookupHost == nil {
		opts.LookupHost = net.DefaultResolver.LookupHost
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	c := &Client{
		target:     t,
		opts:       opts,
		resolveNow: make(chan struct{}, 1),
		state:      connectivity.Connecting,
		changed:    make(chan struct{}),
	}
	c.obs = newObservers(opts.Conn, c.invoke, c.newStream)
	c.opts.Conn = withoutObservers(opts.Conn) // the sub-connections'
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.ready.Store(&[]ready{})
	if t.static != nil {
		c.setAddrs(t.static)
	} else {
		c.wg.Add(1)
		go c.resolve()
	}
	return c, nil
}

// State returns the Client's connectivity state, aggregated over its
// endpoints as gRPC's round_robin does: READY if any is, else CONNECTING
// if any is, else TRANSIENT_FAILURE; SHUTDOWN after Close. An endpoint
// that failed to connect counts as TRANSIENT_FAILURE until it is READY
// again, through its later attempts. A Client starts CONNECTING and is
// never IDLE.
func (c *Client) State() connectivity.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// WaitForStateChange waits until the state differs from from and reports
// true, or until ctx ends and reports false.
func (c *Client) WaitForStateChange(ctx context.Context, from connectivity.State) bool {
	for {
		c.mu.Lock()
		st, changed := c.state, c.changed
		c.mu.Unlock()
		if st != from {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// WaitReady waits until a sub-connection is READY and returns nil. It
// returns the last connection error (a status, UNAVAILABLE for an
// endpoint that could not be reached) once every endpoint has failed to
// connect, CANCELLED after Close, or ctx's status if ctx ends first.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		c.mu.Lock()
		st, changed, lastErr := c.state, c.changed, c.lastErr
		c.mu.Unlock()
		switch st {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure:
			return lastErr
		case connectivity.Shutdown:
			return errClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
		}
	}
}

// Close closes every connection and stops connecting; calls in flight
// fail with CANCELLED. No goroutine of the Client outlives it.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.cancel()
	c.updateLocked()
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Invoke performs a unary call on a READY sub-connection. It implements
// grpc.ClientConnInterface; of the grpc.CallOptions only
// grpc.WaitForReady is heeded. A call the server never processed
// (ErrNotProcessed) is made again on another READY sub-connection, up to
// MaxAttempts in all, under the caller's deadline; with RetryIdempotent,
// so is a call that failed with UNAVAILABLE.
func (c *Client) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if c.obs.unary != nil {
		return c.obs.unary(ctx, method, args, reply, nil, opts...)
	}
	return c.invoke(ctx, method, args, reply, nil, opts...)
}

// invoke performs a unary call, in a client span when the Client traces.
func (c *Client) invoke(ctx context.Context, method string, args, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
	ctx, span, md := c.obs.startSpan(ctx, method)
	err := c.attempts(ctx, span, md, method, args, reply, opts)
	c.obs.endSpan(span, err)
	return err
}

// attempts makes a unary call's attempts, each sending md too.
func (c *Client) attempts(ctx context.Context, span trace.Span, md []string, method string, args, reply any, opts []grpc.CallOption) error {
	wait := c.waitForReady(opts)
	retries := 0
	for attempt := 1; ; attempt++ {
		r, err := c.pick(ctx, wait)
		if err != nil {
			return err
		}
		peer(span, r.conn)
		err = r.conn.invoke(ctx, method, args, reply, md)
		r.sc.release()
		if err == nil || !c.retry(ctx, r, err, attempt, c.opts.RetryIdempotent, &retries) {
			return err
		}
		c.onRetry(ctx, method)
	}
}

// NewStream opens a streaming call on a READY sub-connection. It
// implements grpc.ClientConnInterface; of the grpc.CallOptions only
// grpc.WaitForReady is heeded. A stream that could not start because its
// connection was going away is opened on another; once opened it is
// never retried: a stream whose server sent GOAWAY before accepting it
// ends with an error that matches ErrNotProcessed, which the caller may
// retry.
func (c *Client) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if c.obs.stream != nil {
		return c.obs.stream(ctx, desc, nil, method, opts...)
	}
	return c.newStream(ctx, desc, nil, method, opts...)
}

// newStream opens a streaming call, in a client span that ends with it
// when the Client traces.
func (c *Client) newStream(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, span, md := c.obs.startSpan(ctx, method)
	wait := c.waitForReady(opts)
	for attempt := 1; ; attempt++ {
		r, err := c.pick(ctx, wait)
		if err != nil {
			c.obs.endSpan(span, err)
			return nil, err
		}
		peer(span, r.conn)
		s, err := r.conn.newStream(ctx, method, r.sc.release, span, md)
		if err == nil {
			return s, nil
		}
		r.sc.release()
		if !c.retry(ctx, r, err, attempt, false, nil) {
			c.obs.endSpan(span, err)
			return nil, err
		}
		c.onRetry(ctx, method)
	}
}

// onRetry reports a retry of a call to ClientOptions.OnRetry.
func (c *Client) onRetry(ctx context.Context, method string) {
	if c.opts.OnRetry != nil {
		c.opts.OnRetry(ctx, method)
	}
}

// waitForReady reports whether a call with opts waits for a READY
// sub-connection.
func (c *Client) waitForReady(opts []grpc.CallOption) bool {
	wait := c.opts.WaitForReady
	for _, o := range opts {
		if ff, ok := o.(grpc.FailFastCallOption); ok {
			wait = !ff.FailFast
		}
	}
	return wait
}

// retry reports whether the call whose attempt on r failed with err is
// made again: when the server never processed it, or, if idempotent, when
// it failed with UNAVAILABLE and the next of the retries (counted in
// *retries) waited its backoff within the deadline.
func (c *Client) retry(ctx context.Context, r ready, err error, attempt int, idempotent bool, retries *int) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	if r.conn.isEnded() {
		c.lost(r.sc, r.conn) // no more picks of it, before its goroutine sees
	}
	if attempt >= c.opts.MaxAttempts || ctx.Err() != nil || c.ctx.Err() != nil {
		return false
	}
	if errors.Is(err, ErrNotProcessed) {
		return true
	}
	if !idempotent {
		return false
	}
	d := calcbackoff.Delay(c.opts.RetryBackoff, *retries, rand.Float64())
	*retries++
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
	return false
}

// pick returns a READY sub-connection, with the call counted in flight on
// it. When there is none it waits for one while an endpoint is
// CONNECTING, or with wait until ctx ends; otherwise it fails with
// UNAVAILABLE and the last connection error.
func (c *Client) pick(ctx context.Context, wait bool) (ready, error) {
	for {
		if r, ok := c.choose(); ok {
			return r, nil
		}
		c.mu.Lock()
		if len(*c.ready.Load()) > 0 {
			c.mu.Unlock()
			continue
		}
		st, changed, lastErr := c.state, c.changed, c.lastErr
		c.mu.Unlock()
		switch {
		case st == connectivity.Shutdown:
			return ready{}, errClosed
		case st == connectivity.TransientFailure && !wait:
			return ready{}, status.Errorf(codes.Unavailable, "tcpconn: no server ready: %s", status.Convert(lastErr).Message())
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ready{}, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// choose takes a READY sub-connection by the Balancer, or reports false
// if there is none.
func (c *Client) choose() (ready, bool) {
	for {
		rs := *c.ready.Load()
		if len(rs) == 0 {
			return ready{}, false
		}
		r := rs[0]
		switch {
		case len(rs) == 1:
		case c.opts.Balancer == PowerOfTwoChoices:
			i, j := rand.IntN(len(rs)), rand.IntN(len(rs)-1)
			if j >= i {
				j++
			}
			r = rs[i]
			if rs[j].sc.inflight.Load() < r.sc.inflight.Load() {
				r = rs[j]
			}
		default:
			r = rs[int(c.next.Add(1)-1)%len(rs)]
		}
		r.sc.inflight.Add(1)
		if !r.sc.removed.Load() {
			return r, true
		}
		r.sc.release() // removed meanwhile: the next snapshot lacks it
	}
}

// updateLocked recomputes the READY list and the aggregate state, and
// wakes the waiters if the state changed. c.mu is held.
func (c *Client) updateLocked() {
	rs := make([]ready, 0, len(c.subs))
	connecting := false
	for _, sc := range c.subs {
		switch sc.state {
		case connectivity.Ready:
			rs = append(rs, ready{sc, sc.conn})
		case connectivity.Connecting:
			connecting = true
		}
	}
	c.ready.Store(&rs)
	st := connectivity.TransientFailure
	switch {
	case c.closed:
		st = connectivity.Shutdown
	case len(rs) > 0:
		st = connectivity.Ready
	case connecting || len(c.subs) == 0 && c.lastErr == nil:
		st = connectivity.Connecting
	}
	if st != c.state {
		c.state = st
		close(c.changed)
		c.changed = make(chan struct{})
	}
}
