// Package dial opens connections to a calc server over either of its
// transports, calc's raw TCP protocol (client/tcpconn) or gRPC, as the
// calc and calc-bench commands configure them with their shared --addr,
// --transport, --compression and --tls flags. Both transports give a
// grpc.ClientConnInterface, so the generated client works on either.
package dial

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // --compression gzip

	"github.com/calcrpc/calc/client/tcpconn"
	_ "github.com/calcrpc/calc/internal/grpcsnappy" // --compression snappy
)

// The default addresses of calcd's two endpoints.
const (
	defaultTCPAddr  = "127.0.0.1:4000"
	defaultGRPCAddr = "127.0.0.1:50051"
)

// Config says which server to connect to and how.
type Config struct {
	// Addr is the server's HOST:PORT; Check sets an empty Addr to the
	// transport's default, 127.0.0.1:4000 for tcp or 127.0.0.1:50051 for
	// grpc.
	Addr string
	// Transport is "tcp" (calc's raw TCP protocol) or "grpc".
	Transport string
	// Compression is the gRPC message compression: "none", "gzip" or
	// "snappy". Raw TCP compresses large messages by itself and takes
	// only "none".
	Compression string
	// TLS is the TLS configuration of either transport (--tls flags).
	TLS TLS
	// Token, if set, is sent as "authorization: Bearer <token>" metadata
	// on every call; Check refuses it in plaintext to a server that is not
	// on a loopback address.
	Token string

	tlsConfig *tls.Config // TLS's, loaded by Check
}

// AddFlags registers --addr, --transport and --compression on fs, setting
// c's fields. The defaults of --addr and --transport come from the
// environment variables CALC_ADDR and CALC_TRANSPORT, read with getenv;
// --transport defaults to tcp without one.
func (c *Config) AddFlags(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.Addr, "addr", getenv("CALC_ADDR"), "server `address` (default "+defaultTCPAddr+" for tcp, "+defaultGRPCAddr+" for grpc; env CALC_ADDR)")
	def := getenv("CALC_TRANSPORT")
	if def == "" {
		def = "tcp"
	}
	fs.StringVar(&c.Transport, "transport", def, "tcp or grpc (env CALC_TRANSPORT)")
	fs.StringVar(&c.Compression, "compression", "none", "grpc message compression: none, gzip or snappy")
	c.TLS.addFlags(fs)
	fs.StringVar(&c.Token, "token", getenv("CALC_TOKEN"), "bearer `token` for servers with --auth-tokens (env CALC_TOKEN, which unlike a flag other users' ps cannot show)")
}

// Check validates c, sets an empty Addr to the transport's default and
// loads the TLS files.
func (c *Config) Check() error {
	var err error
	if c.tlsConfig, err = c.TLS.Config(); err != nil {
		return err
	}
	switch c.Transport {
	case "tcp":
		if c.Addr == "" {
			c.Addr = defaultTCPAddr
		}
		if c.Compression != "none" {
			return errors.New("--compression applies to --transport grpc only (raw TCP compresses large messages itself)")
		}
	case "grpc":
		if c.Addr == "" {
			c.Addr = defaultGRPCAddr
		}
		if c.Compression != "none" && c.Compression != "gzip" && c.Compression != "snappy" {
			return fmt.Errorf("unknown compression %q", c.Compression)
		}
	default:
		return fmt.Errorf("unknown transport %q (want tcp or grpc)", c.Transport)
	}
	return c.checkToken()
}

// Open opens one connection to the server cfg names, which cfg.Check has
// accepted. ctx bounds the raw TCP handshake; gRPC connects lazily, on
// the first call. wrap, if not nil, wraps the socket, as calc-bench does
// to count bytes. Open returns the connection and a function that closes
// it. Raw TCP errors are gRPC statuses (tcpconn.Dial), except that with
// wrap a failure to reach the server is the socket's own error.
func Open(ctx context.Context, cfg Config, wrap func(net.Conn) net.Conn) (grpc.ClientConnInterface, func(), error) {
	conn, closeConn, err := open(ctx, cfg, wrap)
	if err != nil || cfg.Token == "" {
		return conn, closeConn, err
	}
	return withToken{conn, "Bearer " + cfg.Token}, closeConn, nil
}

func open(ctx context.Context, cfg Config, wrap func(net.Conn) net.Conn) (grpc.ClientConnInterface, func(), error) {
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || wrap == nil {
			return nc, err
		}
		return wrap(nc), nil
	}
	if cfg.Transport == "tcp" {
		if wrap == nil {
			conn, err := tcpconn.Dial(ctx, cfg.Addr, tcpconn.Options{TLSConfig: cfg.tlsConfig})
			if err != nil {
				return nil, nil, err
			}
			return conn, func() { conn.Close() }, nil
		}
		nc, err := dialer(ctx, cfg.Addr)
		if err != nil {
			return nil, nil, err
		}
		conn, err := tcpconn.NewConn(ctx, nc, tcpconn.Options{TLSConfig: cfg.tlsConfig})
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return conn, func() { conn.Close() }, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(grpcCredentials(cfg.tlsConfig)), grpc.WithContextDialer(dialer)}
	if cfg.Compression != "none" {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(cfg.Compression)))
	}
	conn, err := grpc.NewClient(cfg.Addr, opts...)
	if err != nil {
		return nil, nil, err
	}
	return conn, func() { conn.Close() }, nil
}
