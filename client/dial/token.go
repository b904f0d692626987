package dial

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// checkToken refuses to send a token in plaintext to a server that is not
// on this machine, as grpc-go's RequireTransportSecurity does: anyone on
// the path could read it and call as its principal.
func (c *Config) checkToken() error {
	if c.Token == "" || c.tlsConfig != nil || loopback(c.Addr) {
		return nil
	}
	return fmt.Errorf("refusing to send --token (CALC_TOKEN) in plaintext to %s, which is not a loopback address: use --tls or --tls-ca", c.Addr)
}

// loopback reports whether addr's host is localhost or a loopback IP.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withToken adds "authorization: Bearer <token>" metadata to every call
// made on a connection, on either transport.
type withToken struct {
	grpc.ClientConnInterface
	authorization string
}

func (w withToken) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return w.ClientConnInterface.Invoke(metadata.AppendToOutgoingContext(ctx, "authorization", w.authorization), method, args, reply, opts...)
}

func (w withToken) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return w.ClientConnInterface.NewStream(metadata.AppendToOutgoingContext(ctx, "authorization", w.authorization), desc, method, opts...)
}
