package metrics_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/server/metrics"
)

// fakeStream receives n messages, then io.EOF.
type fakeStream struct {
	grpc.ServerStream
	n int
}

func (f *fakeStream) Context() context.Context { return context.Background() }
func (f *fakeStream) SendMsg(any) error        { return nil }
func (f *fakeStream) RecvMsg(any) error {
	if f.n == 0 {
		return io.EOF
	}
	f.n--
	return nil
}

// drive makes the same calls through a pair of interceptors.
func drive(t *testing.T, unary grpc.UnaryServerInterceptor, stream grpc.StreamServerInterceptor) {
	t.Helper()
	ctx := context.Background()
	calc := &grpc.UnaryServerInfo{FullMethod: "/calculator.v1.CalculatorService/Calculate"}
	ok := func(context.Context, any) (any, error) { return "resp", nil }
	bad := func(context.Context, any) (any, error) { return nil, status.Error(codes.InvalidArgument, "x") }
	plain := func(context.Context, any) (any, error) { return nil, errors.New("not a status") }
	for range 3 {
		_, _ = unary(ctx, "req", calc, ok)
	}
	_, _ = unary(ctx, "req", calc, bad)
	_, _ = unary(ctx, "req", &grpc.UnaryServerInfo{FullMethod: "malformed"}, plain)
	_, _ = unary(ctx, "req", calc, ok) // back to the first method (RPCMetrics caches the last one)
	bidi := &grpc.StreamServerInfo{FullMethod: "/calculator.v1.CalculatorService/CalculateStream", IsClientStream: true, IsServerStream: true}
	watch := &grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true}
	echo := func(_ any, ss grpc.ServerStream) error {
		for {
			if err := ss.RecvMsg(nil); err != nil {
				return nil
			}
			_ = ss.SendMsg(nil)
		}
	}
	_ = stream(nil, &fakeStream{n: 4}, bidi, echo)
	_ = stream(nil, &fakeStream{n: 1}, watch, func(_ any, ss grpc.ServerStream) error {
		_ = ss.RecvMsg(nil)
		_ = ss.SendMsg(nil)
		return status.Error(codes.DeadlineExceeded, "late")
	})
}

// gather returns every family of reg without what differs from run to
// run: creation times, and the histograms' sums and buckets (durations).
func gather(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.Metric {
			if c := m.Counter; c != nil {
				c.CreatedTimestamp = nil
			}
			if h := m.Histogram; h != nil {
				m.Histogram = &dto.Histogram{SampleCount: h.SampleCount} // no sum, buckets or created time
			}
		}
	}
	return fams
}

// TestSameAsGoGRPCMiddleware: RPCMetrics count exactly what
// go-grpc-middleware's provider counts, under the same names, help and
// labels, so one dashboard reads both transports.
func TestSameAsGoGRPCMiddleware(t *testing.T) {
	theirs := metrics.NewServerMetrics("x")
	ours := metrics.NewRPCMetrics("x")
	regTheirs, regOurs := prometheus.NewRegistry(), prometheus.NewRegistry()
	regTheirs.MustRegister(theirs)
	regOurs.MustRegister(ours)
	drive(t, theirs.UnaryServerInterceptor(), theirs.StreamServerInterceptor())
	drive(t, ours.UnaryServerInterceptor(), ours.StreamServerInterceptor())
	a, b := gather(t, regTheirs), gather(t, regOurs)
	if len(a) != len(b) {
		t.Fatalf("%d families from go-grpc-middleware, %d from RPCMetrics", len(a), len(b))
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			t.Errorf("go-grpc-middleware:\n%v\nRPCMetrics:\n%v", a[i], b[i])
		}
	}
	both := prometheus.NewRegistry() // the two transports side by side
	both.MustRegister(metrics.NewServerMetrics("grpc"), metrics.NewRPCMetrics("tcp"))
}
