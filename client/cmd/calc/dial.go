package main

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // --compression gzip

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	_ "github.com/calcrpc/calc/internal/grpcsnappy" // --compression snappy
)

// dial connects to the server over the configured transport and returns a
// client with a function that closes the connection.
func dial(ctx context.Context, cfg cliConfig) (calculatorv1.CalculatorServiceClient, func(), error) {
	dctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	conn, closeFn, err := connect(dctx, cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	return calculatorv1.NewCalculatorServiceClient(conn), closeFn, nil
}

// connect opens one connection over the configured transport; ctx bounds
// the raw TCP handshake (gRPC connects lazily). wrap, if not nil, wraps the
// socket, as calc bench does to count bytes. It returns the connection and
// a function that closes it.
func connect(ctx context.Context, cfg cliConfig, wrap func(net.Conn) net.Conn) (grpc.ClientConnInterface, func(), error) {
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || wrap == nil {
			return nc, err
		}
		return wrap(nc), nil
	}
	if cfg.transport == "tcp" {
		if wrap == nil {
			conn, err := tcpconn.Dial(ctx, cfg.addr, tcpconn.Options{})
			if err != nil {
				return nil, nil, err
			}
			return conn, func() { conn.Close() }, nil
		}
		nc, err := dialer(ctx, cfg.addr)
		if err != nil {
			return nil, nil, err
		}
		conn, err := tcpconn.NewConn(ctx, nc, tcpconn.Options{})
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return conn, func() { conn.Close() }, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dialer)}
	if cfg.compression != "none" {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(cfg.compression)))
	}
	conn, err := grpc.NewClient(cfg.addr, opts...)
	if err != nil {
		return nil, nil, err
	}
	return conn, func() { conn.Close() }, nil
}
