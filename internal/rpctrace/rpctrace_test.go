package rpctrace_test

import (
	"context"
	"net"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/calcrpc/calc/internal/rpctrace"
)

// BenchmarkServerUnsampled is the server interceptor's cost per call
// with a TracerProvider that samples nothing, against no interceptor:
// a call without trace context (also with onlyJoins, which gives it no
// span), and one whose client sent an unsampled traceparent.
//
//	go test -run '^$' -bench ServerUnsampled -benchmem ./internal/rpctrace
func BenchmarkServerUnsampled(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	icpt := rpctrace.NewServer(tp, nil, false).UnaryServerInterceptor()
	joins := rpctrace.NewServer(tp, nil, true).UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/calculator.v1.CalculatorService/Calculate"}
	handler := func(ctx context.Context, req any) (any, error) { return req, nil }
	base := peer.NewContext(context.Background(), &peer.Peer{
		Addr:      &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000},
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000},
	})
	withParent := metadata.NewIncomingContext(base, metadata.Pairs("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
	b.Run("off", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = handler(base, "req")
		}
	})
	b.Run("no-context", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = icpt(base, "req", info, handler)
		}
	})
	b.Run("only-joins/no-context", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = joins(base, "req", info, handler)
		}
	})
	b.Run("traceparent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = icpt(withParent, "req", info, handler)
		}
	})
}

// TestCodeName: the names otelgrpc gives rpc.response.status_code.
func TestCodeName(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unauthenticated: "UNAUTHENTICATED", 17: "CODE(17)"} {
		if got := rpctrace.CodeName(c); got != want {
			t.Errorf("CodeName(%d) = %q, want %q", c, got, want)
		}
	}
}
