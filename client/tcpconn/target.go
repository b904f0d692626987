package tcpconn

import (
	"context"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// dnsScheme starts a target a Client resolves by DNS.
const dnsScheme = "dns:///"

// target is a parsed Client target: a static list of addresses, or a host
// name to resolve and the port to use with each of its addresses.
type target struct {
	static     []string // HOST:PORT each, for a static list
	host, port string   // for dns:///HOST:PORT
}

// parseTarget parses "HOST:PORT", "HOST:PORT,HOST:PORT,..." or
// "dns:///HOST:PORT". A malformed target is INVALID_ARGUMENT.
func parseTarget(s string) (target, error) {
	bad := func(format string, args ...any) (target, error) {
		return target{}, status.Errorf(codes.InvalidArgument, "tcpconn: target %q: "+format, append([]any{s}, args...)...)
	}
	if rest, ok := strings.CutPrefix(s, dnsScheme); ok {
		host, port, err := net.SplitHostPort(rest)
		if err != nil || host == "" || port == "" {
			return bad("want dns:///HOST:PORT")
		}
		return target{host: host, port: port}, nil
	}
	if strings.Contains(s, "://") {
		return bad("the only scheme is dns:///")
	}
	var t target
	for a := range strings.SplitSeq(s, ",") {
		a = strings.TrimSpace(a)
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return bad("%q is not HOST:PORT", a)
		}
		t.static = append(t.static, a)
	}
	return t, nil
}

// resolve returns the target's addresses, asking lookup for a DNS name's.
func (t target) resolve(ctx context.Context, lookup func(ctx context.Context, host string) ([]string, error)) ([]string, error) {
	if t.static != nil {
		return t.static, nil
	}
	ips, err := lookup(ctx, t.host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", t.host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolving %s: no addresses", t.host)
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip, t.port))
	}
	return addrs, nil
}
