package connectpeer_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/bench/peers/connectpeer"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calculator"
)

// TestPeerAnswers serves the calculator with connect over h2c on loopback
// and calls it: a unary call, a failing one with its exact code, and a
// bidi stream; every call goes over HTTP/2.
func TestPeerAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := connectpeer.NewServer(calculator.New())
	var protos []string
	inner := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos = append(protos, r.Proto) // one request at a time in this test
		inner.ServeHTTP(w, r)
	})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	c := connectpeer.NewClient(lis.Addr().String(), nil)
	defer c.Close()
	resp, err := c.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	if err != nil || resp.GetResult() != 5 {
		t.Fatalf("Calculate(ADD, 2, 3) = %d, %v; want 5", resp.GetResult(), err)
	}
	_, err = c.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_DIVIDE, Lhs: 1})
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
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	for _, p := range protos {
		if p != "HTTP/2.0" {
			t.Errorf("a call went over %s, want HTTP/2.0", p)
		}
	}
	if len(protos) != 3 {
		t.Errorf("the server saw %d requests, want 3", len(protos))
	}
}
