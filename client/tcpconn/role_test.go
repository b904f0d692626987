package tcpconn_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

// TestReadingRoleChurn runs callers that come and go on one connection, so
// that the reading role passes between the reader and callers alone on it
// many times, some of them cancelled or timing out while they read, and a
// stream joins them halfway (from then on the reader keeps the role):
// every call gets its right answer or its context's error, the stream all
// its answers, and the connection serves a last call.
func TestReadingRoleChurn(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	conn := srv.DialTCP(t, tcpconn.Options{})
	client := calculatorv1.NewCalculatorServiceClient(conn)
	var wg sync.WaitGroup
	halfway := make(chan struct{})
	var once sync.Once
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 600 {
				if i == 300 {
					once.Do(func() { close(halfway) })
				}
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond) // callers thin out
				}
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				switch rng.IntN(10) {
				case 0:
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(100))*time.Microsecond)
				case 1:
					ctx, cancel = context.WithCancel(ctx)
					time.AfterFunc(time.Duration(rng.IntN(100))*time.Microsecond, cancel)
				}
				resp, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{
					Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: int64(i), Rhs: int64(w)})
				cancel()
				switch code := status.Code(err); {
				case err == nil && resp.GetResult() != int64(i+w):
					t.Errorf("%d + %d = %d", i, w, resp.GetResult())
				case err != nil && code != codes.Canceled && code != codes.DeadlineExceeded:
					t.Errorf("%d + %d: %v", i, w, err)
				}
			}
		})
	}
	wg.Go(func() {
		<-halfway
		stream, err := client.CalculateStream(context.Background())
		if err != nil {
			t.Error(err)
			return
		}
		for i := range 200 {
			if err := stream.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: &calculatorv1.CalculateRequest{
				Operator: calculatorv1.Operator_OPERATOR_MULTIPLY, Lhs: int64(i), Rhs: 2}}); err != nil {
				t.Error(err)
				return
			}
			resp, err := stream.Recv()
			if err != nil || resp.GetId() != uint64(i) || resp.GetResult() != int64(2*i) {
				t.Errorf("stream %d × 2: %v, %v", i, resp, err)
				return
			}
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	if resp, err := client.Calculate(context.Background(), add); err != nil || resp.GetResult() != 5 {
		t.Fatalf("last call: %v, %v", resp, err)
	}
}
