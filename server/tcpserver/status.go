package tcpserver

import (
	"context"
	"errors"
	"syscall"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/internal/wire"
)

// errTooManyFiles is the accept error that backs off instead of failing.
var errTooManyFiles = syscall.EMFILE

// statusProto returns a google.rpc.Status with code and msg.
func statusProto(code codes.Code, msg string) *spb.Status {
	return &spb.Status{Code: int32(code), Message: msg}
}

// statusOf returns the google.rpc.Status a call failing with err answers:
// the error's own status, a context error's, or the wire layer's message
// errors, these built directly (no status.Status, no clone): a refused
// snappy bomb must cost no more than an ordinary call.
func statusOf(err error) *spb.Status {
	switch {
	case errors.Is(err, wire.ErrMessageTooLarge):
		return statusProto(codes.ResourceExhausted, err.Error())
	case errors.Is(err, wire.ErrCorruptMessage):
		return statusProto(codes.InvalidArgument, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		return st.Proto()
	}
	return status.FromContextError(err).Proto()
}

// chainUnary composes interceptors into one, first outermost, or returns
// nil when there are none.
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return ics[0](ctx, req, info, unaryLink(ics, 1, info, handler))
	}
}

func unaryLink(ics []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(ics) {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return ics[i](ctx, req, info, unaryLink(ics, i+1, info, final))
	}
}

// chainStream composes stream interceptors like chainUnary.
func chainStream(ics []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ics[0](srv, ss, info, streamLink(ics, 1, info, handler))
	}
}

func streamLink(ics []grpc.StreamServerInterceptor, i int, info *grpc.StreamServerInfo, final grpc.StreamHandler) grpc.StreamHandler {
	if i == len(ics) {
		return final
	}
	return func(srv any, ss grpc.ServerStream) error {
		return ics[i](srv, ss, info, streamLink(ics, i+1, info, final))
	}
}
