package dial_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/dial"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/tcpserver"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		addr string
		err  string // in the error, or "" for none
	}{
		{args: nil, addr: "127.0.0.1:4000"},
		{args: []string{"--transport", "grpc"}, addr: "127.0.0.1:50051"},
		{args: []string{"--transport", "grpc", "--compression", "snappy"}, addr: "127.0.0.1:50051"},
		{args: []string{"--addr", "localhost:7"}, addr: "localhost:7"},
		{env: map[string]string{"CALC_ADDR": "localhost:7000", "CALC_TRANSPORT": "grpc"}, addr: "localhost:7000"},
		{args: []string{"--transport", "tcp"}, env: map[string]string{"CALC_TRANSPORT": "grpc"}, addr: "127.0.0.1:4000"},
		{args: []string{"--transport", "udp"}, err: `unknown transport "udp"`},
		{args: []string{"--compression", "gzip"}, err: "--compression applies to --transport grpc only"},
		{args: []string{"--transport", "grpc", "--compression", "brotli"}, err: `unknown compression "brotli"`},
		{args: []string{"--tls"}, addr: "127.0.0.1:4000"},
		{args: []string{"--tls-ca", "testdata/missing.pem"}, err: "--tls-ca: open testdata/missing.pem: no such file or directory"},
		{args: []string{"--tls-cert", "client.pem"}, err: "--tls-cert and --tls-key go together"},
		{args: []string{"--tls-cert", "missing.pem", "--tls-key", "missing-key.pem"}, err: "--tls-cert, --tls-key: open missing.pem: no such file or directory"},
		{args: []string{"--token", "t"}, addr: "127.0.0.1:4000"},
		{args: []string{"--token", "t", "--addr", "localhost:4000"}, addr: "localhost:4000"},
		{args: []string{"--token", "t", "--addr", "[::1]:4000"}, addr: "[::1]:4000"},
		{args: []string{"--tls", "--addr", "calc.example:4000"}, env: map[string]string{"CALC_TOKEN": "t"}, addr: "calc.example:4000"},
		{args: []string{"--addr", "calc.example:4000"}, env: map[string]string{"CALC_TOKEN": "t"}, err: "refusing to send --token (CALC_TOKEN) in plaintext to calc.example:4000, which is not a loopback address: use --tls or --tls-ca"},
		{args: []string{"--token", "t", "--addr", "10.0.0.1:4000"}, err: "refusing to send --token"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var cfg dial.Config
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			cfg.AddFlags(fs, func(k string) string { return tt.env[k] })
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := cfg.Check()
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("Check: %v; want an error with %q", err, tt.err)
			case tt.err == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.err == "" && cfg.Addr != tt.addr:
				t.Fatalf("Addr %q, want %q", cfg.Addr, tt.addr)
			}
		})
	}
}

// countingConn counts the bytes a connection reads.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestOpen calls a server over each transport, with and without a wrapped
// socket.
func TestOpen(t *testing.T) {
	addrs := serve(t)
	for _, transport := range []string{"tcp", "grpc"} {
		for _, wrapped := range []bool{false, true} {
			name := transport
			if wrapped {
				name += " wrapped"
			}
			t.Run(name, func(t *testing.T) {
				var read atomic.Int64
				var wrap func(net.Conn) net.Conn
				if wrapped {
					wrap = func(nc net.Conn) net.Conn { return countingConn{nc, &read} }
				}
				cfg := dial.Config{Addr: addrs[transport], Transport: transport, Compression: "none"}
				conn, closeFn, err := dial.Open(context.Background(), cfg, wrap)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := calculatorv1.NewCalculatorServiceClient(conn).Calculate(context.Background(),
					&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
				closeFn()
				if err != nil || resp.GetResult() != 5 {
					t.Fatalf("Calculate(2 + 3) = %v, %v", resp, err)
				}
				if wrapped != (read.Load() > 0) {
					t.Fatalf("wrapped %v, but the wrapper read %d bytes", wrapped, read.Load())
				}
			})
		}
	}
}

// TestOpenTargets opens clients of a list of two servers and of a
// dns:/// name over each transport and calls through them, and checks
// the errors of a bad target and of servers that are all down.
func TestOpenTargets(t *testing.T) {
	first, second := serve(t), serve(t)
	down := closedAddr(t)
	for _, transport := range []string{"tcp", "grpc"} {
		_, port, _ := net.SplitHostPort(first[transport])
		tests := []struct {
			name string
			addr string
			code codes.Code // of Open over tcp, or of the call
		}{
			{"list", first[transport] + "," + second[transport], codes.OK},
			{"list with a server down", down + "," + first[transport], codes.OK},
			{"dns", "dns:///localhost:" + port, codes.OK},
			{"all down", down + "," + down, codes.Unavailable},
		}
		for _, tt := range tests {
			t.Run(transport+" "+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cfg := dial.Config{Addr: tt.addr, Transport: transport, Compression: "none"}
				conn, closeFn, err := dial.Open(ctx, cfg, nil)
				if err == nil {
					defer closeFn()
					for range 4 {
						_, err = calculatorv1.NewCalculatorServiceClient(conn).Calculate(ctx,
							&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
						if err != nil {
							break
						}
					}
				}
				if status.Code(err) != tt.code {
					t.Fatalf("%s over %s: %v; want %v", tt.addr, transport, err, tt.code)
				}
			})
		}
	}
	cfg := dial.Config{Addr: "calc.internal", Transport: "tcp", Compression: "none"}
	if _, _, err := dial.Open(context.Background(), cfg, nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Open with a target without a port: %v; want INVALID_ARGUMENT", err)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestOpenRetry calls, over each transport, a server that fails every
// other call with UNAVAILABLE: by default each failed attempt is retried
// and counted by OnRetry; with NoRetry the call fails and nothing is
// retried.
func TestOpenRetry(t *testing.T) {
	var handled atomic.Int64
	flaky := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if handled.Add(1)%2 == 1 {
			return nil, status.Error(codes.Unavailable, "flaky: try again")
		}
		return handler(ctx, req)
	}
	addrs := serve(t, flaky)
	for _, transport := range []string{"tcp", "grpc"} {
		for _, noRetry := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s NoRetry=%v", transport, noRetry), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var retries atomic.Int64
				cfg := dial.Config{Addr: addrs[transport], Transport: transport, Compression: "none", NoRetry: noRetry,
					OnRetry: func() { retries.Add(1) }}
				conn, closeFn, err := dial.Open(ctx, cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer closeFn()
				const calls = 3
				for range calls {
					handled.Store(0)
					resp, err := calculatorv1.NewCalculatorServiceClient(conn).Calculate(ctx,
						&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
					switch {
					case noRetry && status.Code(err) != codes.Unavailable:
						t.Fatalf("Calculate: %v, %v; want UNAVAILABLE", resp, err)
					case !noRetry && (err != nil || resp.GetResult() != 5):
						t.Fatalf("Calculate(2 + 3) = %v, %v; want 5 on the second attempt", resp, err)
					}
				}
				want := int64(calls)
				if noRetry {
					want = 0
				}
				if n := retries.Load(); n != want {
					t.Fatalf("OnRetry called %d times; want %d", n, want)
				}
			})
		}
	}
	// With no server to retry on, a gRPC call fails at once, unretried,
	// as Open does over raw TCP.
	var retries atomic.Int64
	cfg := dial.Config{Addr: closedAddr(t), Transport: "grpc", Compression: "none", OnRetry: func() { retries.Add(1) }}
	conn, closeFn, err := dial.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	_, err = calculatorv1.NewCalculatorServiceClient(conn).Calculate(context.Background(),
		&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	if status.Code(err) != codes.Unavailable || retries.Load() != 0 {
		t.Fatalf("gRPC call to a closed port: %v after %d retries; want UNAVAILABLE and none", err, retries.Load())
	}
}

// TestCheckRetryFlag parses --retry.
func TestCheckRetryFlag(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		noRetry bool
	}{
		{nil, false},
		{[]string{"--retry"}, false},
		{[]string{"--retry=true"}, false},
		{[]string{"--retry=false"}, true},
	} {
		var cfg dial.Config
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		cfg.AddFlags(fs, func(string) string { return "" })
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if cfg.NoRetry != tt.noRetry {
			t.Errorf("%q: NoRetry %v, want %v", tt.args, cfg.NoRetry, tt.noRetry)
		}
	}
	var cfg dial.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.AddFlags(fs, func(string) string { return "" })
	if err := fs.Parse([]string{"--retry=maybe"}); err == nil {
		t.Fatal("--retry=maybe parsed; want an error")
	}
}

// serve runs the calculator on a raw TCP server and a gRPC server on
// loopback until the test ends, with interceptors, and returns their
// addresses by transport.
func serve(t *testing.T, interceptors ...grpc.UnaryServerInterceptor) map[string]string {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := tcpserver.New(tcpserver.Options{UnaryInterceptors: interceptors})
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(interceptors...))
	calculatorv1.RegisterCalculatorServiceServer(ts, calculator.New())
	calculatorv1.RegisterCalculatorServiceServer(gs, calculator.New())
	done := make(chan struct{}, 2)
	go func() { _ = ts.Serve(tl); done <- struct{}{} }()
	go func() { _ = gs.Serve(gl); done <- struct{}{} }()
	t.Cleanup(func() {
		_ = ts.Shutdown(context.Background())
		gs.Stop()
		<-done
		<-done
	})
	return map[string]string{"tcp": tl.Addr().String(), "grpc": gl.Addr().String()}
}

// TestClientMetrics makes known calls over each transport with client
// metrics on and checks grpc_client_* exactly, by transport, method, type
// and code.
func TestClientMetrics(t *testing.T) {
	addrs := serve(t)
	reg := prometheus.NewPedanticRegistry()
	add := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
	byZero := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_DIVIDE, Lhs: 1, Rhs: 0}
	want := map[string][2]int{"tcp": {3, 2}, "grpc": {1, 4}} // OK, INVALID_ARGUMENT
	for _, tr := range []string{"tcp", "grpc"} {
		m := dial.NewClientMetrics(tr)
		reg.MustRegister(m)
		conn, closeFn, err := dial.Open(context.Background(), dial.Config{Addr: addrs[tr], Transport: tr, Compression: "none", ClientMetrics: m}, nil)
		if err != nil {
			t.Fatal(err)
		}
		client := calculatorv1.NewCalculatorServiceClient(conn)
		for i, req := range []*calculatorv1.CalculateRequest{add, byZero} {
			for range want[tr][i] {
				_, err := client.Calculate(context.Background(), req)
				if got, wantCode := status.Code(err), []codes.Code{codes.OK, codes.InvalidArgument}[i]; got != wantCode {
					t.Fatalf("%s: %v, want %v", tr, err, wantCode)
				}
			}
		}
		s, err := client.CalculateStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: add}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		_ = s.CloseSend()
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("%s: stream end %v", tr, err)
		}
		closeFn()
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
			}
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for tr, n := range want {
		unary := "grpc_method=Calculate,grpc_service=calculator.v1.CalculatorService,grpc_type=unary,transport=" + tr
		bidi := "grpc_method=CalculateStream,grpc_service=calculator.v1.CalculatorService,grpc_type=bidi_stream,transport=" + tr
		for series, v := range map[string]float64{
			"grpc_client_started_total{" + unary + "}": float64(n[0] + n[1]),
			"grpc_client_handled_total{grpc_code=OK,grpc_method=Calculate,grpc_service=calculator.v1.CalculatorService,grpc_type=unary,transport=" + tr + "}":              float64(n[0]),
			"grpc_client_handled_total{grpc_code=InvalidArgument,grpc_method=Calculate,grpc_service=calculator.v1.CalculatorService,grpc_type=unary,transport=" + tr + "}": float64(n[1]),
			"grpc_client_msg_sent_total{" + unary + "}":     float64(n[0] + n[1]),
			"grpc_client_msg_received_total{" + unary + "}": float64(n[0]),
			"grpc_client_handling_seconds{" + unary + "}":   float64(n[0] + n[1]),
			"grpc_client_started_total{" + bidi + "}":       1,
			"grpc_client_handled_total{grpc_code=OK,grpc_method=CalculateStream,grpc_service=calculator.v1.CalculatorService,grpc_type=bidi_stream,transport=" + tr + "}": 1,
			"grpc_client_msg_sent_total{" + bidi + "}":     2,
			"grpc_client_msg_received_total{" + bidi + "}": 2,
		} {
			if got[series] != v {
				t.Errorf("%s = %v, want %v", series, got[series], v)
			}
		}
	}
}
