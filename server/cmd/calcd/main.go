// Command calcd serves the calculator over gRPC and over calc's raw TCP
// protocol from one process, with one CalculatorService behind both.
//
// Usage:
//
//	calcd [flags]
//
// Every flag can also be set with an environment variable; a flag given on
// the command line wins:
//
//	--grpc-addr         CALCD_GRPC_ADDR         gRPC listen address (127.0.0.1:50051)
//	--tcp-addr          CALCD_TCP_ADDR          raw TCP listen address (127.0.0.1:4000)
//	--max-connections   CALCD_MAX_CONNECTIONS   raw TCP connection cap (10000)
//	--log-level         CALCD_LOG_LEVEL         debug, info, warn or error (info)
//	--log-format        CALCD_LOG_FORMAT        json or text (json)
//	--shutdown-timeout  CALCD_SHUTDOWN_TIMEOUT  how long SIGTERM waits for calls (30s)
//	--pprof-addr        CALCD_PPROF_ADDR        net/http/pprof listen address (off)
//
// An address with port 0 picks a free port; the "listening" log record
// names the address actually bound. On SIGINT or SIGTERM calcd reports
// NOT_SERVING on its health service, sends GOAWAY on raw TCP connections,
// lets in-flight calls finish and exits 0; a second signal exits at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on --pprof-addr
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/grpcserver"
	"github.com/calcrpc/calc/server/interceptor"
	"github.com/calcrpc/calc/server/tcpserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { // a second signal does not wait for the drain
		<-ctx.Done()
		stop()
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM)
		<-c
		os.Exit(1)
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "calcd:", err)
		os.Exit(1)
	}
}

// config is calcd's configuration.
type config struct {
	grpcAddr, tcpAddr, pprofAddr string
	maxConns                     int
	logLevel                     slog.Level
	logFormat                    string
	shutdownTimeout              time.Duration
}

// parseConfig reads flags over environment variables over defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var cfg config
	fs := flag.NewFlagSet("calcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.grpcAddr, "grpc-addr", env("CALCD_GRPC_ADDR", "127.0.0.1:50051"), "gRPC listen `address` (env CALCD_GRPC_ADDR)")
	fs.StringVar(&cfg.tcpAddr, "tcp-addr", env("CALCD_TCP_ADDR", "127.0.0.1:4000"), "raw TCP listen `address` (env CALCD_TCP_ADDR)")
	fs.StringVar(&cfg.pprofAddr, "pprof-addr", env("CALCD_PPROF_ADDR", ""), "net/http/pprof listen `address`, off if empty (env CALCD_PPROF_ADDR)")
	maxConns := fs.String("max-connections", env("CALCD_MAX_CONNECTIONS", strconv.Itoa(tcpserver.DefaultMaxConnections)), "raw TCP connection cap (env CALCD_MAX_CONNECTIONS)")
	level := fs.String("log-level", env("CALCD_LOG_LEVEL", "info"), "debug, info, warn or error (env CALCD_LOG_LEVEL)")
	fs.StringVar(&cfg.logFormat, "log-format", env("CALCD_LOG_FORMAT", "json"), "json or text (env CALCD_LOG_FORMAT)")
	timeout := fs.String("shutdown-timeout", env("CALCD_SHUTDOWN_TIMEOUT", "30s"), "how long shutdown waits for in-flight calls (env CALCD_SHUTDOWN_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.maxConns, err = strconv.Atoi(*maxConns); err != nil || cfg.maxConns <= 0 {
		return cfg, fmt.Errorf("invalid max connections %q", *maxConns)
	}
	if err := cfg.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return cfg, fmt.Errorf("invalid log level %q", *level)
	}
	if cfg.logFormat != "json" && cfg.logFormat != "text" {
		return cfg, fmt.Errorf("invalid log format %q", cfg.logFormat)
	}
	if cfg.shutdownTimeout, err = time.ParseDuration(*timeout); err != nil {
		return cfg, fmt.Errorf("invalid shutdown timeout %q", *timeout)
	}
	return cfg, nil
}

// run serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	hopts := &slog.HandlerOptions{Level: cfg.logLevel}
	var handler slog.Handler = slog.NewJSONHandler(stderr, hopts)
	if cfg.logFormat == "text" {
		handler = slog.NewTextHandler(stderr, hopts)
	}
	logger := slog.New(handler)

	svc := calculator.New()
	grpcSrv := grpcserver.New(grpcserver.Options{Logger: logger.With("transport", "grpc")})
	calculatorv1.RegisterCalculatorServiceServer(grpcSrv, svc)
	tcpLogger := logger.With("transport", "tcp")
	tcpSrv := tcpserver.New(tcpserver.Options{
		Logger:             tcpLogger,
		UnaryInterceptors:  interceptor.Unary(tcpLogger),
		StreamInterceptors: interceptor.Stream(tcpLogger),
		InlineMethods:      calculator.CheapMethods,
		MaxConnections:     cfg.maxConns,
	})
	calculatorv1.RegisterCalculatorServiceServer(tcpSrv, svc)

	grpcLis, err := net.Listen("tcp", cfg.grpcAddr)
	if err != nil {
		return err
	}
	tcpLis, err := net.Listen("tcp", cfg.tcpAddr)
	if err != nil {
		grpcLis.Close()
		return err
	}
	errc := make(chan error, 3)
	go func() { errc <- grpcSrv.Serve(grpcLis) }()
	go func() { errc <- tcpSrv.Serve(tcpLis) }()
	if cfg.pprofAddr != "" {
		pprofLis, err := net.Listen("tcp", cfg.pprofAddr)
		if err != nil {
			return err
		}
		logger.Info("listening", "transport", "pprof", "addr", pprofLis.Addr().String())
		go func() { _ = http.Serve(pprofLis, nil) }()
	}
	logger.Info("listening", "transport", "grpc", "addr", grpcLis.Addr().String())
	logger.Info("listening", "transport", "tcp", "addr", tcpLis.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	logger.Info("shutting down", "timeout", cfg.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- grpcSrv.Shutdown(sctx) }()
	go func() { done <- tcpSrv.Shutdown(sctx) }()
	shutdownErr := errors.Join(<-done, <-done)
	if serveErr != nil && !errors.Is(serveErr, grpcserver.ErrServerClosed) && !errors.Is(serveErr, tcpserver.ErrServerClosed) {
		return serveErr
	}
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	logger.Info("stopped")
	return nil
}
