package dial

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// The retries of gRPC unary calls, with tcpconn's numbers
// (tcpconn.ClientOptions.RetryIdempotent and MaxAttempts).
const (
	retryMaxAttempts = 5
	retryBaseDelay   = 100 * time.Millisecond
	retryMultiplier  = 1.6
	retryJitter      = 0.2
	retryMaxDelay    = time.Second
)

// retryDelay is the wait before retry n+1 (n from 0): retryBaseDelay
// ×retryMultiplier^n, at most retryMaxDelay, spread by ±retryJitter as rnd
// in [0, 1) says (0.5: none), as gRPC's connection backoff computes it.
func retryDelay(n int, rnd float64) time.Duration {
	d := float64(retryBaseDelay)
	for ; n > 0 && d < float64(retryMaxDelay); n-- {
		d *= retryMultiplier
	}
	d = min(d, float64(retryMaxDelay))
	return time.Duration(d * (1 + retryJitter*(rnd*2-1)))
}

// retryUnary returns the interceptor that retries a gRPC unary call that
// failed with UNAVAILABLE, as tcpconn.Client does with RetryIdempotent:
// at most retryMaxAttempts attempts, spaced by retryDelay, within the
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
			if status.Code(err) != codes.Unavailable || attempt >= retryMaxAttempts || ctx.Err() != nil ||
				cc.GetState() != connectivity.Ready {
				return err
			}
			d := retryDelay(attempt-1, rand.Float64())
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
