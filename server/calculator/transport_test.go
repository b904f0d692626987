package calculator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calltest"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCasesOverBothTransports runs every shared conformance case over raw
// TCP and gRPC: each must pass on both, with identical results, codes,
// messages and details.
func TestCasesOverBothTransports(t *testing.T) {
	cases, err := calltest.Load("../../testdata/conformance/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := calcdtest.Start(t, calcd.Config{})
	clients := srv.Clients(t)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			outcomes := map[string]calltest.Outcome{}
			for _, tr := range calcdtest.Transports {
				out, err := calltest.Run(ctx, clients[tr], c)
				if err != nil {
					t.Errorf("%s: %v", tr, err)
				}
				outcomes[tr] = out
			}
			if outcomes["tcp"] != outcomes["grpc"] {
				t.Errorf("transports differ:\ntcp:  %+v\ngrpc: %+v", outcomes["tcp"], outcomes["grpc"])
			}
		})
	}
}

// recorder is an interceptor that records what the handler's context held.
type recorder struct {
	mu       sync.Mutex
	deadline map[string]time.Duration // transport → time left when the call arrived
	auth     map[string]string
}

func (r *recorder) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	tr := "grpc"
	if len(md.Get("transport")) > 0 {
		tr = md.Get("transport")[0]
	}
	r.mu.Lock()
	if d, ok := ctx.Deadline(); ok {
		r.deadline[tr] = time.Until(d)
	}
	if v := md.Get("authorization"); len(v) > 0 {
		r.auth[tr] = v[0]
	}
	r.mu.Unlock()
	return handler(ctx, req)
}

// TestDeadlineAndMetadataReachTheHandler checks that both transports hand
// the handler the caller's deadline and metadata.
func TestDeadlineAndMetadataReachTheHandler(t *testing.T) {
	rec := &recorder{deadline: map[string]time.Duration{}, auth: map[string]string{}}
	srv := calcdtest.Start(t, calcd.Config{UnaryInterceptors: []grpc.UnaryServerInterceptor{rec.unary}})
	for tr, client := range srv.Clients(t) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr, "transport", tr)
		_, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 2})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
	}
	for _, tr := range calcdtest.Transports {
		if d := rec.deadline[tr]; d < 59*time.Minute || d > time.Hour {
			t.Errorf("%s: handler saw %v left of a 1h deadline", tr, d)
		}
		if rec.auth[tr] != "Bearer "+tr {
			t.Errorf("%s: handler saw authorization %q", tr, rec.auth[tr])
		}
	}
}

// panicky panics in every handler.
type panicky struct {
	calculatorv1.UnimplementedCalculatorServiceServer
}

func (panicky) Calculate(context.Context, *calculatorv1.CalculateRequest) (*calculatorv1.CalculateResponse, error) {
	panic("boom")
}

func (panicky) CalculateStream(calculatorv1.CalculatorService_CalculateStreamServer) error {
	panic("boom")
}

// TestPanicBecomesInternal checks the shared recovery interceptor on both
// transports, and that the servers go on serving.
func TestPanicBecomesInternal(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{Service: panicky{}})
	for tr, client := range srv.Clients(t) {
		for range 2 {
			_, err := client.Calculate(context.Background(), &calculatorv1.CalculateRequest{})
			if status.Code(err) != codes.Internal {
				t.Errorf("%s Calculate: %v, want INTERNAL", tr, err)
			}
			stream, err := client.CalculateStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); status.Code(err) != codes.Internal {
				t.Errorf("%s CalculateStream: %v, want INTERNAL", tr, err)
			}
		}
		_, err := client.Evaluate(context.Background(), &calculatorv1.EvaluateRequest{})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s Evaluate: %v, want UNIMPLEMENTED", tr, err)
		}
	}
}

// TestCancelReachesTheHandler checks that cancelling a call cancels the
// handler's context on both transports. It calls Evaluate, which raw TCP
// runs in a goroutine of its own: the interceptor blocks, and an inline
// method (Calculate) would block its connection's reader.
func TestCancelReachesTheHandler(t *testing.T) {
	started := make(chan struct{}, 2)
	ended := make(chan error, 2)
	wait := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	srv := calcdtest.Start(t, calcd.Config{UnaryInterceptors: []grpc.UnaryServerInterceptor{wait}})
	for tr, client := range srv.Clients(t) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "1"})
			errc <- err
		}()
		<-started
		cancel()
		if err := <-errc; status.Code(err) != codes.Canceled {
			t.Errorf("%s: caller got %v, want CANCELLED", tr, err)
		}
		if err := <-ended; err != context.Canceled {
			t.Errorf("%s: handler context ended with %v, want context.Canceled", tr, err)
		}
	}
}
