package tcpconn_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

// TestBusyPoll runs many callers on one connection, so that the reader
// reads several answers at once and then polls for the next
// (Options.BusyPoll), in waves with pauses between them that make polls
// end empty: with polling on by default, off, and asked for longer than
// its maximum, every call gets its answer.
func TestBusyPoll(t *testing.T) {
	for _, tc := range []struct {
		name string
		poll time.Duration
	}{
		{"default", 0},
		{"off", -1},
		{"longer than the maximum", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := calcdtest.Start(t, calcd.Config{})
			conn := srv.DialTCP(t, tcpconn.Options{BusyPoll: tc.poll})
			client := calculatorv1.NewCalculatorServiceClient(conn)
			for wave := range 5 {
				var wg sync.WaitGroup
				for w := range 32 {
					wg.Go(func() {
						for i := range 50 {
							resp, err := client.Calculate(context.Background(), &calculatorv1.CalculateRequest{
								Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: int64(i), Rhs: int64(w)})
							if err != nil || resp.GetResult() != int64(i+w) {
								t.Errorf("wave %d: %d + %d = %d, %v", wave, i, w, resp.GetResult(), err)
								return
							}
						}
					})
				}
				wg.Wait()
				time.Sleep(3 * time.Millisecond) // past any poll: the next one ends empty
			}
		})
	}
}
