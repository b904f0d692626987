package tcpserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calltest"
	"github.com/calcrpc/calc/server/tcpserver"
)

// dispatchModels are the engine models every test in forEachDispatch runs
// under; the pool is small so that its queue fills and connections wait.
var dispatchModels = []tcpserver.Options{
	{Dispatch: tcpserver.DispatchInline},
	{Dispatch: tcpserver.DispatchGoroutine},
	{Dispatch: tcpserver.DispatchPool, Workers: 2, QueueSize: 4},
}

// forEachDispatch runs body once per dispatch model, with Options holding
// only the model's fields.
func forEachDispatch(t *testing.T, body func(t *testing.T, opts tcpserver.Options)) {
	for _, opts := range dispatchModels {
		t.Run(opts.Dispatch.String(), func(t *testing.T) { body(t, opts) })
	}
}

// TestDispatchModels runs the shared conformance cases, then 64 callers
// on one connection, under each dispatch model: every call is answered
// with its right result or status, whichever goroutine ran it, and the
// server shuts down with no goroutine left behind.
func TestDispatchModels(t *testing.T) {
	cases, err := calltest.Load("../../testdata/conformance/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	forEachDispatch(t, func(t *testing.T, opts tcpserver.Options) {
		srv := start(t, opts)
		client := calculatorv1.NewCalculatorServiceClient(srv.DialTCP(t, tcpconnOptions))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, c := range cases {
			if _, err := calltest.Run(ctx, client, c); err != nil {
				t.Errorf("%s: %v", c.Name, err)
			}
		}
		const callers, calls = 64, 50
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for w := range callers {
			wg.Go(func() {
				for i := range calls {
					lhs := int64(w*calls + i)
					resp, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: lhs, Rhs: 1})
					if err != nil || resp.GetResult() != lhs+1 {
						errs <- fmt.Errorf("Calculate(ADD, %d, 1) = %d, %v", lhs, resp.GetResult(), err)
						return
					}
					if i%10 == 0 { // a failing call between them
						_, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_DIVIDE, Lhs: lhs})
						if status.Code(err) != codes.InvalidArgument {
							errs <- fmt.Errorf("Calculate(DIVIDE, %d, 0): %v, want INVALID_ARGUMENT", lhs, err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestDispatchPoolShutdownWithQueuedCalls shuts a pool server down while
// one connection has more calls queued than the pool has workers and
// queue: every call is answered before the connection closes.
func TestDispatchPoolShutdownWithQueuedCalls(t *testing.T) {
	srv := start(t, tcpserver.Options{Dispatch: tcpserver.DispatchPool, Workers: 1, QueueSize: 1})
	conn := srv.DialTCP(t, tcpconn.Options{})
	client := calculatorv1.NewCalculatorServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var failed sync.Map
	for i := range 32 {
		wg.Go(func() {
			if _, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "2 ^ 1000 / 3"}); err != nil {
				failed.Store(i, err)
			}
		})
	}
	shut := make(chan error, 1)
	go func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		shut <- srv.TCP.Shutdown(sctx)
	}()
	wg.Wait()
	conn.Close()
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	// A call the server had not accepted when GOAWAY left is refused with
	// UNAVAILABLE (the client may retry it); none may be lost or fail
	// otherwise.
	failed.Range(func(k, v any) bool {
		if status.Code(v.(error)) != codes.Unavailable {
			t.Errorf("call %v: %v", k, v)
		}
		return true
	})
}

// TestParseDispatch: every model's name parses back to it; others are
// refused.
func TestParseDispatch(t *testing.T) {
	for _, opts := range dispatchModels {
		d, err := tcpserver.ParseDispatch(opts.Dispatch.String())
		if err != nil || d != opts.Dispatch {
			t.Errorf("ParseDispatch(%q) = %v, %v", opts.Dispatch, d, err)
		}
	}
	if _, err := tcpserver.ParseDispatch("threads"); err == nil {
		t.Error("ParseDispatch(threads) succeeded")
	}
	if s := tcpserver.Dispatch(7).String(); s != "Dispatch(7)" {
		t.Errorf("Dispatch(7).String() = %q", s)
	}
}
