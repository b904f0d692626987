package tcpconn

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/internal/wire"
)

// withServerName returns cfg with ServerName set to addr's host when it
// is empty, as crypto/tls.Dial does; cfg itself is not changed.
func withServerName(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil || cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.ServerName = host
	return cfg
}

// startTLS runs the client's TLS handshake on nc, under ctx, with a clone
// of cfg requiring TLS 1.3 and offering ALPN wire.ALPN. An empty
// ServerName is taken from nc's remote address (an IP address): Dial sets
// it from the host it was given. A failed handshake is UNAVAILABLE (an
// unknown authority, a wrong name, an expired certificate, a server that
// refused ours or does not speak TLS), DEADLINE_EXCEEDED or CANCELLED if
// ctx ended first.
func startTLS(ctx context.Context, nc net.Conn, cfg *tls.Config) (net.Conn, error) {
	cfg = cfg.Clone()
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS13)
	cfg.NextProtos = []string{wire.ALPN}
	if cfg.ServerName == "" {
		cfg = withServerName(cfg, nc.RemoteAddr().String())
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		code := codes.Unavailable
		if errors.Is(err, os.ErrDeadlineExceeded) {
			code = codes.DeadlineExceeded
		}
		return nil, status.Errorf(code, "tcpconn: TLS handshake with %s: %v", nc.RemoteAddr(), err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != wire.ALPN {
		return nil, status.Errorf(codes.Unavailable, "tcpconn: %s did not agree to ALPN %s over TLS (got %q)", nc.RemoteAddr(), wire.ALPN, got)
	}
	return tc, nil
}
