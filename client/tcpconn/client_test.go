package tcpconn_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calcd"
)

// fast is a connection backoff for loopback tests.
var fast = tcpconn.ClientOptions{
	Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond},
	MinConnectTimeout: 5 * time.Second,
}

// wait bounds every wait of these tests: generous, never a measure.
const wait = 30 * time.Second

// server is a calcd whose raw TCP endpoint listens on a chosen address,
// so that a test can stop it and start another on the same one. It counts
// the unary calls it handles.
type server struct {
	addr   string
	calls  atomic.Int64
	srv    *calcd.Server
	served chan error
	down   bool
}

// serveAt starts a calcd whose raw TCP endpoint listens on addr
// ("127.0.0.1:0" for any port), with interceptors inside the counting one;
// it is stopped when the test ends unless stopped before.
func serveAt(t *testing.T, addr string, interceptors ...grpc.UnaryServerInterceptor) *server {
	t.Helper()
	s := &server{served: make(chan error, 1)}
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		s.calls.Add(1)
		return handler(ctx, req)
	}
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = tl.Addr().String()
	s.srv = calcd.New(calcd.Config{
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		UnaryInterceptors: append([]grpc.UnaryServerInterceptor{count}, interceptors...),
	})
	go func() { s.served <- s.srv.Serve(calcd.Listeners{TCP: tl, GRPC: gl}) }()
	t.Cleanup(func() {
		if !s.down {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.stop(t, ctx)
		}
	})
	return s
}

// stop shuts the calcd down, draining within ctx.
func (s *server) stop(t *testing.T, ctx context.Context) {
	t.Helper()
	s.down = true
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-s.served; !errors.Is(err, calcd.ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
}

// newClient returns a Client for target, closed when the test ends.
func newClient(t *testing.T, target string, opts tcpconn.ClientOptions) *tcpconn.Client {
	t.Helper()
	cc, err := tcpconn.NewClient(target, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// calculate makes one Calculate call, 2 + 3, and checks its answer.
func calculate(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) error {
	resp, err := calculatorv1.NewCalculatorServiceClient(cc).Calculate(ctx, add, opts...)
	if err == nil && resp.GetResult() != 5 {
		err = errors.New("wrong result")
	}
	return err
}

// reachAll makes calls until every server has handled one, at most a
// thousand, then zeroes their counts.
func reachAll(t *testing.T, ctx context.Context, cc grpc.ClientConnInterface, servers ...*server) {
	t.Helper()
	for range 1000 {
		if !slices.ContainsFunc(servers, func(s *server) bool { return s.calls.Load() == 0 }) {
			for _, s := range servers {
				s.calls.Store(0)
			}
			return
		}
		if err := calculate(ctx, cc, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("some server got none of 1000 calls")
}

// TestClientRestart restarts the server on the same port: the Client
// leaves READY, calls succeed again once it is back, and it is READY.
func TestClientRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	srv := serveAt(t, "127.0.0.1:0")
	cc := newClient(t, srv.addr, fast)
	if err := cc.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := calculate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	if st := cc.State(); st != connectivity.Ready {
		t.Fatalf("state %v before the restart, want READY", st)
	}
	srv.stop(t, ctx)
	if !cc.WaitForStateChange(ctx, connectivity.Ready) {
		t.Fatal("still READY with the server down")
	}
	if st := cc.State(); st != connectivity.Connecting && st != connectivity.TransientFailure {
		t.Fatalf("state %v with the server down, want CONNECTING or TRANSIENT_FAILURE", st)
	}
	serveAt(t, srv.addr)
	if err := calculate(ctx, cc, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("call after the restart: %v", err)
	}
	if st := cc.State(); st != connectivity.Ready {
		t.Fatalf("state %v after the restart, want READY", st)
	}
}

// TestClientDrain drains one of two servers while goroutines make calls:
// the calls its GOAWAY refused are made again on the other, and none
// fails.
func TestClientDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	a, b := serveAt(t, "127.0.0.1:0"), serveAt(t, "127.0.0.1:0")
	cc := newClient(t, a.addr+","+b.addr, fast)
	reachAll(t, ctx, cc, a, b)
	const workers, calls = 8, 300
	var done atomic.Int64
	halfway := make(chan struct{})
	var failed []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range calls {
				if err := calculate(ctx, cc); err != nil {
					mu.Lock()
					failed = append(failed, err)
					mu.Unlock()
				}
				if done.Add(1) == workers*calls/4 {
					close(halfway)
				}
			}
		})
	}
	<-halfway
	a.stop(t, ctx)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d calls failed during the drain, the first: %v", len(failed), workers*calls, failed[0])
	}
	if b.calls.Load() == 0 {
		t.Fatal("the server left running got no call")
	}
}

// TestClientBalances makes 200 calls over two servers and counts them on
// each side: round robin splits them evenly, power of two choices uses
// both.
func TestClientBalances(t *testing.T) {
	tests := []struct {
		name     string
		balancer tcpconn.Balancer
		maxDiff  int64 // the most the two counts may differ by
	}{
		{"round robin", tcpconn.RoundRobin, 2},
		{"power of two choices", tcpconn.PowerOfTwoChoices, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			a, b := serveAt(t, "127.0.0.1:0"), serveAt(t, "127.0.0.1:0")
			opts := fast
			opts.Balancer = tt.balancer
			cc := newClient(t, a.addr+","+b.addr, opts)
			reachAll(t, ctx, cc, a, b)
			for range 200 {
				if err := calculate(ctx, cc); err != nil {
					t.Fatal(err)
				}
			}
			na, nb := a.calls.Load(), b.calls.Load()
			if na+nb != 200 || na == 0 || nb == 0 || max(na-nb, nb-na) > tt.maxDiff {
				t.Fatalf("the servers got %d and %d calls; want 200, both some, differing by at most %d", na, nb, tt.maxDiff)
			}
		})
	}
}

// TestClientDNS resolves a dns:/// target with a fake resolver to two
// loopback addresses, then changes the answer and stops one server: the
// reconnect resolves again and calls reach the new address.
func TestClientDNS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	first := serveAt(t, "127.0.0.2:0") // the whole 127/8 is loopback on Linux
	_, port, _ := net.SplitHostPort(first.addr)
	second := serveAt(t, net.JoinHostPort("127.0.0.3", port))
	third := serveAt(t, net.JoinHostPort("127.0.0.4", port))
	var answer atomic.Pointer[[]string]
	answer.Store(&[]string{"127.0.0.2", "127.0.0.3"})
	var lookups atomic.Int64
	opts := fast
	opts.ResolveInterval = time.Hour // only reconnects resolve again
	opts.LookupHost = func(_ context.Context, host string) ([]string, error) {
		if host != "calc.test" {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		lookups.Add(1)
		return *answer.Load(), nil
	}
	cc := newClient(t, "dns:///calc.test:"+port, opts)
	reachAll(t, ctx, cc, first, second)
	before := lookups.Load()
	answer.Store(&[]string{"127.0.0.3", "127.0.0.4"})
	first.stop(t, ctx)
	for i := 0; third.calls.Load() == 0; i++ {
		if i == 10000 {
			t.Fatal("10000 calls and none reached the new address")
		}
		if err := calculate(ctx, cc); err != nil {
			t.Fatal(err)
		}
	}
	if lookups.Load() == before {
		t.Fatal("the reconnect did not resolve again")
	}
}

// TestClientAllDown checks a Client whose only endpoint refuses
// connections: calls fail fast with UNAVAILABLE, a call waiting for ready
// ends at its deadline, and Close, with reconnects pending, leaves no
// goroutine.
func TestClientAllDown(t *testing.T) {
	running := goleak.IgnoreCurrent()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cc, err := tcpconn.NewClient(addr, tcpconn.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := calculate(ctx, cc); status.Code(err) != codes.Unavailable {
		t.Fatalf("call with every server down: %v; want UNAVAILABLE", err)
	}
	if err := cc.WaitReady(ctx); status.Code(err) != codes.Unavailable {
		t.Fatalf("WaitReady: %v; want UNAVAILABLE", err)
	}
	if st := cc.State(); st != connectivity.TransientFailure {
		t.Fatalf("state %v, want TRANSIENT_FAILURE", st)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := calculate(short, cc, grpc.WaitForReady(true)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call waiting for ready: %v; want DEADLINE_EXCEEDED", err)
	}
	cc.Close()
	if st := cc.State(); st != connectivity.Shutdown {
		t.Fatalf("state %v after Close, want SHUTDOWN", st)
	}
	if err := calculate(ctx, cc); status.Code(err) != codes.Canceled {
		t.Fatalf("call after Close: %v; want CANCELLED", err)
	}
	goleak.VerifyNone(t, running)
}

// TestClientRetryIdempotent kills a server while it holds a call: with
// RetryIdempotent the call is made again on the other server and
// succeeds; without, it fails with UNAVAILABLE.
func TestClientRetryIdempotent(t *testing.T) {
	tests := []struct {
		name    string
		retry   bool
		want    codes.Code
		retries int64
	}{
		{"retry", true, codes.OK, 1},
		{"no retry", false, codes.Unavailable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			entered := make(chan struct{}, 1)
			hold := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				if info.FullMethod != calculatorv1.CalculatorService_Evaluate_FullMethodName {
					return handler(ctx, req)
				}
				entered <- struct{}{}
				<-ctx.Done()
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			a, b := serveAt(t, "127.0.0.1:0", hold), serveAt(t, "127.0.0.1:0")
			opts := fast
			opts.RetryIdempotent = tt.retry
			var retries atomic.Int64
			opts.OnRetry = func(_ context.Context, method string) {
				if method != calculatorv1.CalculatorService_Evaluate_FullMethodName {
					t.Errorf("OnRetry(%q): want the Evaluate method", method)
				}
				retries.Add(1)
			}
			cc := newClient(t, a.addr+","+b.addr, opts)
			reachAll(t, ctx, cc, a, b)
			// Round robin sends one of two calls to each server.
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					resp, err := calculatorv1.NewCalculatorServiceClient(cc).Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "2 + 3"})
					if err == nil && resp.GetResult() != "5" {
						err = errors.New("wrong result")
					}
					errs <- err
				}()
			}
			<-entered
			expired, cancelExpired := context.WithCancel(ctx)
			cancelExpired()
			a.stop(t, expired)
			var codesSeen []codes.Code
			for range 2 {
				codesSeen = append(codesSeen, status.Code(<-errs))
			}
			if !slices.Contains(codesSeen, codes.OK) || !slices.Contains(codesSeen, tt.want) {
				t.Fatalf("the calls ended %v; want OK and %v", codesSeen, tt.want)
			}
			if n := retries.Load(); n != tt.retries {
				t.Fatalf("OnRetry called %d times; want %d", n, tt.retries)
			}
		})
	}
}
