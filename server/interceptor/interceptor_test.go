package interceptor_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/server/interceptor"
)

// TestAccessLogSampling: without sampling, failed calls are logged at
// Info and successful ones are not; sampling one call in three logs every
// third call at Info, whatever its outcome, marked sampled=3.
func TestAccessLogSampling(t *testing.T) {
	info := &grpc.UnaryServerInfo{FullMethod: "/calculator.v1.CalculatorService/Calculate"}
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	bad := func(context.Context, any) (any, error) {
		return nil, status.Error(codes.InvalidArgument, "division by zero")
	}
	for _, tt := range []struct {
		every       int
		records     int
		sampled     int
		failuresOut int
	}{
		{every: 0, records: 3, sampled: 0, failuresOut: 3},
		{every: 3, records: 3, sampled: 3, failuresOut: 0},
		{every: 1, records: 9, sampled: 9, failuresOut: 3},
	} {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, nil)) // Info and above
		icpt := interceptor.UnaryLogging(logger, tt.every)
		for i := range 9 {
			h := ok
			if i%3 == 0 { // calls 1, 4 and 7 fail; 3, 6 and 9 are the sampled ones
				h = bad
			}
			_, _ = icpt(context.Background(), "req", info, h)
		}
		out := buf.String()
		if n := strings.Count(out, "msg=call"); n != tt.records {
			t.Errorf("every %d: %d records, want %d:\n%s", tt.every, n, tt.records, out)
		}
		if n := strings.Count(out, "sampled="); n != tt.sampled {
			t.Errorf("every %d: %d marked sampled, want %d", tt.every, n, tt.sampled)
		}
		if n := strings.Count(out, "code=InvalidArgument"); n != tt.failuresOut {
			t.Errorf("every %d: %d failures logged, want %d", tt.every, n, tt.failuresOut)
		}
	}
}

// TestAccessLogTraceID: a call whose context holds a span context is
// logged with its trace_id and span_id; one without, with neither.
func TestAccessLogTraceID(t *testing.T) {
	info := &grpc.UnaryServerInfo{FullMethod: "/calculator.v1.CalculatorService/Calculate"}
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	traced := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	for _, tt := range []struct {
		ctx  context.Context
		want string
	}{
		{traced, "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"},
		{context.Background(), ""},
	} {
		var buf bytes.Buffer
		icpt := interceptor.UnaryLogging(slog.New(slog.NewTextHandler(&buf, nil)), 1)
		_, _ = icpt(tt.ctx, "req", info, ok)
		out := buf.String()
		if tt.want != "" && !strings.Contains(out, tt.want) || tt.want == "" && strings.Contains(out, "trace_id") {
			t.Errorf("logged %q, want %q in it", out, tt.want)
		}
	}
}
