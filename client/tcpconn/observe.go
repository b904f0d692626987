package tcpconn

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/calcrpc/calc/internal/rpctrace"
)

// observers are what a Conn or Client runs around its calls when
// Options ask for it: the client interceptors, chained once, and the
// tracer. The zero value runs nothing and costs one nil check per call.
type observers struct {
	unary  grpc.UnaryInvoker // the interceptor chain ending in the call, or nil
	stream grpc.Streamer     // likewise for streams
	tracer *rpctrace.Client  // nil: no spans
}

// newObservers builds the observers of opts around the calls invoke and
// newStream make.
func newObservers(opts Options, invoke grpc.UnaryInvoker, newStream grpc.Streamer) observers {
	var o observers
	if opts.TracerProvider != nil {
		o.tracer = rpctrace.NewClient(opts.TracerProvider, opts.Propagator)
	}
	if len(opts.UnaryInterceptors) > 0 {
		o.unary = chainUnary(opts.UnaryInterceptors, invoke)
	}
	if len(opts.StreamInterceptors) > 0 {
		o.stream = chainStream(opts.StreamInterceptors, newStream)
	}
	return o
}

// withoutObservers returns opts for the sub-connections of a Client,
// which observes each call once itself, around its attempts.
func withoutObservers(opts Options) Options {
	opts.TracerProvider, opts.Propagator = nil, nil
	opts.UnaryInterceptors, opts.StreamInterceptors = nil, nil
	return opts
}

// chainUnary returns the invoker that runs ics around final, first
// outermost, as grpc.WithChainUnaryInterceptor does.
func chainUnary(ics []grpc.UnaryClientInterceptor, final grpc.UnaryInvoker) grpc.UnaryInvoker {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], final
		final = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
			return ic(ctx, method, req, reply, cc, next, opts...)
		}
	}
	return final
}

// chainStream is chainUnary for streams.
func chainStream(ics []grpc.StreamClientInterceptor, final grpc.Streamer) grpc.Streamer {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], final
		final = func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return ic(ctx, desc, cc, method, next, opts...)
		}
	}
	return final
}

// startSpan starts a call's client span if the observers trace, and
// returns ctx with it and the metadata pairs that carry its context; the
// span is nil otherwise.
func (o *observers) startSpan(ctx context.Context, method string) (context.Context, trace.Span, []string) {
	if o.tracer == nil {
		return ctx, nil, nil
	}
	return o.tracer.Start(ctx, method)
}

// endSpan ends a call's span, if it has one, with the call's error.
func (o *observers) endSpan(span trace.Span, err error) {
	if span != nil {
		rpctrace.EndClient(span, err)
	}
}

// peer records on span, if there is one, the server the call went to.
func peer(span trace.Span, c *Conn) {
	if span != nil {
		rpctrace.Peer(span, c.nc.RemoteAddr())
	}
}
