package drpcpeer_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/bench/peers/drpcpeer"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calculator"
)

// TestPeerAnswers serves the calculator over drpc on loopback and calls it:
// a unary call, a failing one with its exact code, and a stream pipelined
// with manual flushes.
func TestPeerAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- drpcpeer.Serve(ctx, lis, calculator.New()) }()

	for _, manual := range []bool{false, true} {
		nc, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := drpcpeer.NewConn(nc, manual)
		resp := new(calculatorv1.CalculateResponse)
		if err := c.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}, resp); err != nil || resp.GetResult() != 5 {
			t.Fatalf("Calculate(ADD, 2, 3) = %d, %v; want 5", resp.GetResult(), err)
		}
		err = c.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_DIVIDE, Lhs: 1}, resp)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Calculate(DIVIDE, 1, 0): %v; want INVALID_ARGUMENT", err)
		}
		s, err := c.CalculateStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		const n = 10
		for i := range n {
			if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_MULTIPLY, Lhs: int64(i), Rhs: 2}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		sr := new(calculatorv1.CalculateStreamResponse)
		for i := range n {
			if err := s.Recv(sr); err != nil || sr.GetId() != uint64(i) || sr.GetResult() != int64(2*i) {
				t.Fatalf("stream answer %d: id %d result %d, %v", i, sr.GetId(), sr.GetResult(), err)
			}
		}
		if err := s.Recv(sr); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last answer: %v, want io.EOF", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
