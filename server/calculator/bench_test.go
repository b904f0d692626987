package calculator_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

// BenchmarkCalculate is one Calculate round trip over loopback through each
// transport, sequential (one call at a time) and parallel (GOMAXPROCS x 16
// callers sharing one connection), with calcd's defaults and with its
// per-RPC metrics on (metrics/...), and with tracing configured but
// sampling nothing (traced-unsampled/...: an SDK TracerProvider whose
// sampler is parentbased_always_off, the clients untraced). Compare
// within one run:
//
//	go test -run '^$' -bench Calculate -benchmem ./server/calculator
func BenchmarkCalculate(b *testing.B) {
	req := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
	for _, c := range []struct {
		prefix string
		cfg    calcd.Config
	}{
		{"", calcd.Config{}},
		{"metrics/", calcd.Config{RPCMetrics: true}},
		{"traced-unsampled/", calcd.Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))}},
	} {
		srv := calcdtest.Start(b, c.cfg)
		clients := srv.Clients(b)
		for _, tr := range calcdtest.Transports {
			client := clients[tr]
			b.Run(c.prefix+tr+"/sequential", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := client.Calculate(context.Background(), req); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(c.prefix+tr+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := client.Calculate(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
