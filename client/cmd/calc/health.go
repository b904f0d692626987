package main

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// The exit statuses of calc health, grpc_health_probe's, so that calc
// health can take its place as a container's probe. They differ from
// calc's others: a usage error is 1 here.
const (
	healthServing    = 0 // the service is SERVING
	healthUsage      = 1 // a bad flag or argument
	healthConnFailed = 2 // the server could not be reached in time
	healthRPCFailed  = 3 // the check failed (NOT_FOUND for an unknown service) or timed out
	healthUnhealthy  = 4 // the check answered, but not SERVING
)

// runHealth is calc health [SERVICE]: a grpc.health.v1.Health/Check of
// SERVICE, or of the whole server without one. It prints the status
// (with --json, the response as JSON) and exits as grpc_health_probe does.
func runHealth(ctx context.Context, s *session, args []string) int {
	req := &healthpb.HealthCheckRequest{}
	if len(args) == 1 {
		req.Service = args[0]
	}
	resp, err := healthpb.NewHealthClient(s.conn).Check(ctx, req)
	if err != nil {
		s.fail(err)
		if c := status.Code(err); (c == codes.Unavailable || c == codes.DeadlineExceeded) && !connected(s.conn) {
			return healthConnFailed
		}
		return healthRPCFailed
	}
	if s.cfg.json {
		_ = json.NewEncoder(s.stdout).Encode(map[string]string{"status": resp.GetStatus().String()})
	} else {
		fmt.Fprintln(s.stdout, resp.GetStatus())
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return healthUnhealthy
	}
	return healthServing
}

// connected reports whether conn reached the server, for a call that
// failed UNAVAILABLE or DEADLINE_EXCEEDED: a raw TCP connection did when it
// was opened; a gRPC connection connects on the first call, and did if it
// is ready. (Any other code came from the server.)
func connected(conn grpc.ClientConnInterface) bool {
	cc, ok := conn.(*grpc.ClientConn)
	return !ok || cc.GetState() == connectivity.Ready
}
