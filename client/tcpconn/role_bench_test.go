package tcpconn_test

import (
	"context"
	"testing"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

// BenchmarkUnaryAlone measures one caller making Calculate calls back to
// back on one connection to an in-process calcd, reading its own answers
// (caller-reads) and with every answer handed over by the reader goroutine
// (reader-hands-off), side by side: compare their ns/op.
func BenchmarkUnaryAlone(b *testing.B) {
	srv := calcdtest.Start(b, calcd.Config{})
	for _, mode := range []struct {
		name  string
		reads bool
	}{{"caller-reads", true}, {"reader-hands-off", false}} {
		b.Run(mode.name, func(b *testing.B) {
			tcpconn.SetCallerReads(b, mode.reads)
			conn := srv.DialTCP(b, tcpconn.Options{})
			client := calculatorv1.NewCalculatorServiceClient(conn)
			ctx, cancel := context.WithCancel(context.Background()) // a context that can end, as most do
			defer cancel()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Calculate(ctx, add); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
