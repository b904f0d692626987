// Package interceptor holds the server interceptors that both of calc's
// transports install: a structured access log (with the call's trace id
// when it is traced) and panic recovery. They are
// plain grpc-go interceptors; the raw TCP server runs them exactly as a
// grpc.Server does.
package interceptor

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// UnaryLogging returns an interceptor that writes one log record per unary
// call: method, peer, status code, duration, on failure the message and,
// when the call's context holds a span (tracing is on), its trace_id and
// span_id, so that a log line leads to its trace.
// With sampleEvery 0, successful calls are logged at Debug level and
// failures at Info, so an access log at the default level costs nothing on
// the hot path. With sampleEvery N > 0 it is an access log a busy server
// can keep on: one call in N, whatever its outcome, is logged at Info with
// a "sampled" attribute of N, and the others at Debug.
func UnaryLogging(logger *slog.Logger, sampleEvery int) grpc.UnaryServerInterceptor {
	s := &sampler{every: uint64(max(sampleEvery, 0))}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		s.logCall(ctx, logger, info.FullMethod, start, err)
		return resp, err
	}
}

// StreamLogging returns an interceptor that writes one log record per stream
// when it ends, like UnaryLogging.
func StreamLogging(logger *slog.Logger, sampleEvery int) grpc.StreamServerInterceptor {
	s := &sampler{every: uint64(max(sampleEvery, 0))}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		s.logCall(ss.Context(), logger, info.FullMethod, start, err)
		return err
	}
}

// sampler picks the calls an access log with sampling writes at Info.
type sampler struct {
	every uint64 // 0: no sampling
	n     atomic.Uint64
}

// level returns the level of a call's record, and whether it was sampled.
func (s *sampler) level(err error) (slog.Level, bool) {
	if s.every > 0 {
		if s.n.Add(1)%s.every == 0 {
			return slog.LevelInfo, true
		}
		return slog.LevelDebug, false
	}
	if err != nil {
		return slog.LevelInfo, false
	}
	return slog.LevelDebug, false
}

// logCall writes the access record for one call.
func (s *sampler) logCall(ctx context.Context, logger *slog.Logger, method string, start time.Time, err error) {
	level, sampled := s.level(err)
	if !logger.Enabled(ctx, level) {
		return
	}
	st := status.Convert(err)
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", st.Code().String()),
		slog.Duration("duration", time.Since(start)),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", st.Message()))
	}
	if sampled {
		attrs = append(attrs, slog.Uint64("sampled", s.every))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	logger.LogAttrs(ctx, level, "call", attrs...)
}

// UnaryRecovery returns an interceptor that turns a panic in the handler into
// an INTERNAL status, logging the panic value and stack at Error level.
func UnaryRecovery(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer recoverTo(ctx, logger, info.FullMethod, &err)
		return handler(ctx, req)
	}
}

// StreamRecovery returns the streaming form of UnaryRecovery.
func StreamRecovery(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer recoverTo(ss.Context(), logger, info.FullMethod, &err)
		return handler(srv, ss)
	}
}

// recoverTo recovers a panic into *err as an INTERNAL status.
func recoverTo(ctx context.Context, logger *slog.Logger, method string, err *error) {
	if r := recover(); r != nil {
		logger.LogAttrs(ctx, slog.LevelError, "panic in handler",
			slog.String("method", method), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
		*err = status.Errorf(codes.Internal, "internal error in %s", method)
	}
}

// UnaryDeadline reports a call whose handler gave up with CANCELLED
// because the call's deadline passed as DEADLINE_EXCEEDED, which is what
// happened, and what a client whose own timer fired first sees: the answer
// no longer depends on which side noticed first.
func UnaryDeadline() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		return resp, deadlineStatus(ctx, err)
	}
}

// StreamDeadline returns the streaming form of UnaryDeadline (a health
// Watch ends this way).
func StreamDeadline() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return deadlineStatus(ss.Context(), handler(srv, ss))
	}
}

func deadlineStatus(ctx context.Context, err error) error {
	if status.Code(err) == codes.Canceled && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, status.Convert(err).Message())
	}
	return err
}

// Unary returns calc's unary interceptor chain, outermost first: logging
// (sampling one call in sampleEvery, or none with 0: see UnaryLogging)
// wraps recovery, so a panic is logged as the INTERNAL call it became, and
// the deadline's status.
func Unary(logger *slog.Logger, sampleEvery int) []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{UnaryLogging(logger, sampleEvery), UnaryRecovery(logger), UnaryDeadline()}
}

// Stream returns calc's stream interceptor chain, in the order of Unary.
func Stream(logger *slog.Logger, sampleEvery int) []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{StreamLogging(logger, sampleEvery), StreamRecovery(logger), StreamDeadline()}
}
