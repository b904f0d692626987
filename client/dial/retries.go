package dial

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	"github.com/calcrpc/calc/internal/backoff"
)

// retryUnary returns the interceptor that retries a gRPC unary call that
// failed with UNAVAILABLE, as tcpconn.Client does with RetryIdempotent:
// at most tcpconn.DefaultMaxAttempts attempts, spaced by backoff.Retry, within the
// call's deadline, and not when the channel is not READY after the
// failure (no server known to answer: the call fails fast, as over raw
// TCP; TRANSIENT_FAILURE alone was not enough, since the channel may
// already be CONNECTING again when the interceptor looks). onRetry, if
// not nil, is called before every retry. gRPC's transparent retries of calls a server never processed
// happen below it, uncounted.
//
// A service config retry policy would retry too, but also calls that
// fail because no server can be reached, for about a second, which a
// command-line user does not want.
func retryUnary(onRetry func()) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		for attempt := 1; ; attempt++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if status.Code(err) != codes.Unavailable || attempt >= tcpconn.DefaultMaxAttempts || ctx.Err() != nil ||
				cc.GetState() != connectivity.Ready {
				return err
			}
			d := backoff.Delay(backoff.Retry, attempt-1, rand.Float64())
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
				return err
			}
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return err
			}
			if onRetry != nil {
				onRetry()
			}
		}
	}
}
