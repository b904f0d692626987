package tcpserver_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/tcpserver"
)

// TestInlineStreamSharesItsConnection: a CalculateStream running on its
// connection's goroutine (DispatchInline, the method in InlineMethods)
// reads the connection for everyone while it waits for input. Unary calls,
// inline and not, and a second stream (which gets a goroutine of its own)
// on the same connection are all answered while it is open, and its own
// answers come back in order. Under the other models every stream has a
// goroutine; the same body must pass.
func TestInlineStreamSharesItsConnection(t *testing.T) {
	forEachDispatch(t, func(t *testing.T, opts tcpserver.Options) {
		srv := start(t, opts)
		client := calculatorv1.NewCalculatorServiceClient(srv.DialTCP(t, tcpconnOptions))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		const n = 300
		var wg sync.WaitGroup
		for range 2 {
			s, err := client.CalculateStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				for i := range n {
					if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: int64(i), Rhs: 1}}); err != nil {
						t.Errorf("Send %d: %v", i, err)
						return
					}
					if i%50 == 0 { // unary calls between the messages
						if r, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_MULTIPLY, Lhs: int64(i), Rhs: 3}); err != nil || r.GetResult() != int64(3*i) {
							t.Errorf("Calculate(MULTIPLY, %d, 3) = %d, %v", i, r.GetResult(), err)
						}
						if r, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "7 / 2"}); err != nil || r.GetResult() != "3.5" {
							t.Errorf("Evaluate(7 / 2) = %q, %v", r.GetResult(), err)
						}
					}
				}
				if err := s.CloseSend(); err != nil {
					t.Error(err)
				}
			})
			wg.Go(func() {
				for i := range n {
					r, err := s.Recv()
					if err != nil || r.GetId() != uint64(i) || r.GetResult() != int64(i+1) {
						t.Errorf("answer %d: id %d result %d, %v", i, r.GetId(), r.GetResult(), err)
						return
					}
				}
				if _, err := s.Recv(); !errors.Is(err, io.EOF) {
					t.Errorf("after the last answer: %v, want io.EOF", err)
				}
			})
		}
		wg.Wait()
	})
}

// TestInlineStreamDeadlineWhileWaiting: a stream whose client sends
// nothing ends with DEADLINE_EXCEEDED at its deadline, though its handler
// was waiting for input on the connection's goroutine, and the connection
// serves on.
func TestInlineStreamDeadlineWhileWaiting(t *testing.T) {
	forEachDispatch(t, func(t *testing.T, opts tcpserver.Options) {
		srv := start(t, opts)
		client := calculatorv1.NewCalculatorServiceClient(srv.DialTCP(t, tcpconnOptions))
		sctx, scancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer scancel()
		s, err := client.CalculateStream(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("stream past its deadline: %v, want DEADLINE_EXCEEDED", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if r, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}); err != nil || r.GetResult() != 5 {
			t.Fatalf("Calculate after the stream: %d, %v", r.GetResult(), err)
		}
	})
}

// TestInlineStreamClientLeaves: a client that closes its connection while
// its stream waits for input ends the handler, and nothing is left
// running (start checks for leaked goroutines at the end).
func TestInlineStreamClientLeaves(t *testing.T) {
	forEachDispatch(t, func(t *testing.T, opts tcpserver.Options) {
		srv := start(t, opts)
		conn := srv.DialTCP(t, tcpconnOptions)
		client := calculatorv1.NewCalculatorServiceClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := client.CalculateStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: 1, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || r.GetResult() != 2 {
			t.Fatalf("first answer: %d, %v", r.GetResult(), err)
		}
		conn.Close()
		for deadline := time.Now().Add(5 * time.Second); srv.TCP.Stats().ConnectionsOpen > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the server still holds the connection 5 s after the client left")
			}
		}
	})
}
