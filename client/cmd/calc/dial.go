package main

import (
	"context"

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
	if cfg.transport == "tcp" {
		dctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
		conn, err := tcpconn.Dial(dctx, cfg.addr, tcpconn.Options{})
		if err != nil {
			return nil, nil, err
		}
		return calculatorv1.NewCalculatorServiceClient(conn), func() { conn.Close() }, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if cfg.compression != "none" {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(cfg.compression)))
	}
	conn, err := grpc.NewClient(cfg.addr, opts...)
	if err != nil {
		return nil, nil, err
	}
	return calculatorv1.NewCalculatorServiceClient(conn), func() { conn.Close() }, nil
}
