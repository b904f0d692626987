package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/bench"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

func noEnv(string) string { return "" }

func TestBenchFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"--transport", "udp"}, "unknown transport"},
		{[]string{"--rpc", "divide"}, "unknown --rpc"},
		{[]string{"--conns", "0"}, "--conns"},
		{[]string{"--conns", "4", "--concurrency", "2"}, "below --conns"},
		{[]string{"--pipeline", "0"}, "--pipeline"},
		{[]string{"--concurrency", "8", "--pipeline", "4"}, "not both"},
		{[]string{"--duration", "0s"}, "--duration must be positive"},
		{[]string{"--warmup", "-1s"}, "--warmup"},
		{[]string{"--count", "-1"}, "--count"},
		{[]string{"--rate", "-5"}, "--rate"},
		{[]string{"--timeout", "-1s"}, "--timeout"},
		{[]string{"--server-pid", "-3"}, "--server-pid"},
		{[]string{"--idle", "-1"}, "--idle"},
		{[]string{"--idle", "10"}, "--server-pid"},
		{[]string{"--idle", "10", "--server-pid", "1", "--transport", "grpc"}, "--transport tcp"},
		{[]string{"--idle", "10", "--server-pid", "1", "--idle-settle", "-1s"}, "--idle-settle must not be negative"},
		{[]string{"--idle-settle", "10s"}, "--idle-settle needs --idle"},
		{[]string{"--burst", "bytes"}, "unknown --burst"},
		{[]string{"--burst", "frames"}, "--server-pid"},
		{[]string{"--burst", "frames", "--server-pid", "1", "--idle", "5"}, "not both"},
		{[]string{"--burst", "streams", "--server-pid", "1", "--transport", "grpc"}, "--transport tcp"},
		{[]string{"--burst", "streams", "--server-pid", "1", "--burst-conns", "-1"}, "--burst-conns"},
		{[]string{"--burst", "streams", "--server-pid", "1", "--burst-streams", "0"}, "--burst-streams"},
		{[]string{"--burst", "frames", "--server-pid", "1", "--burst-trickle", "0"}, "--burst-trickle"},
		{[]string{"--burst", "frames", "--server-pid", "1", "--burst-wait", "-1s"}, "--burst-wait"},
		{[]string{"--addr", "10.1.2.3:4000"}, "not a loopback address"},
		{[]string{"--server-pprof", "192.168.1.1:6060"}, "not a loopback address"},
		{[]string{"--compression", "gzip"}, "--compression applies to --transport grpc only"},
		{[]string{"--transport", "grpc", "--compression", "brotli"}, "unknown compression"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
		{[]string{"--retry=maybe"}, "invalid boolean value"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tt.args, &stdout, &stderr, noEnv); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr %q lacks %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestBenchFlagDefaults(t *testing.T) {
	tests := []struct {
		args        []string
		env         map[string]string
		addr        string
		concurrency int
	}{
		{nil, nil, "127.0.0.1:4000", 1},
		{[]string{"--transport", "grpc"}, nil, "127.0.0.1:50051", 1},
		{[]string{"--conns", "4"}, nil, "127.0.0.1:4000", 4},
		{[]string{"--conns", "2", "--pipeline", "8"}, nil, "127.0.0.1:4000", 16},
		{[]string{"--conns", "8", "--concurrency", "64"}, nil, "127.0.0.1:4000", 64},
		{[]string{"--rpc", "stream", "--conns", "4", "--pipeline", "128"}, nil, "127.0.0.1:4000", 4},
		{[]string{"--rpc", "stream", "--conns", "2", "--concurrency", "6", "--pipeline", "3"}, nil, "127.0.0.1:4000", 6},
		{[]string{"--allow-remote", "--addr", "10.1.2.3:4000"}, nil, "10.1.2.3:4000", 1},
		{nil, map[string]string{"CALC_ADDR": "localhost:7000", "CALC_TRANSPORT": "grpc"}, "localhost:7000", 1},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			f, err := parseFlags(context.Background(), tt.args, &stderr, func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatalf("parseFlags: %v (%s)", err, stderr.String())
			}
			if f.conn.Addr != tt.addr || f.load.Concurrency != tt.concurrency || f.timeout != 0 {
				t.Fatalf("addr %q concurrency %d timeout %v; want %q, %d, 0", f.conn.Addr, f.load.Concurrency, f.timeout, tt.addr, tt.concurrency)
			}
		})
	}
}

// TestBenchEndToEnd runs calc-bench against both transports of an
// in-process server.
func TestBenchEndToEnd(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	addrs := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}
	pid := strconv.Itoa(os.Getpid())
	onLinux := runtime.GOOS == "linux"
	tests := []struct {
		name string
		args []string
	}{
		{"calculate", []string{"--conns", "2", "--concurrency", "4", "--duration", "300ms"}},
		{"calculate count", []string{"--count", "200", "--duration", "300ms"}},
		{"evaluate", []string{"--rpc", "evaluate", "--count", "100", "--duration", "300ms"}},
		{"stream", []string{"--rpc", "stream", "--conns", "2", "--pipeline", "8", "--duration", "300ms"}},
		{"stream count", []string{"--rpc", "stream", "--pipeline", "4", "--count", "300", "--duration", "300ms"}},
		{"rate", []string{"--rate", "500", "--concurrency", "2", "--duration", "300ms", "--timeout", "5s"}},
	}
	for _, transport := range []string{"tcp", "grpc"} {
		for _, tt := range tests {
			t.Run(transport+" "+tt.name, func(t *testing.T) {
				chart := filepath.Join(t.TempDir(), "chart.svg")
				args := append([]string{"--transport", transport, "--addr", addrs[transport], "--warmup", "50ms", "--json", "--chart", chart}, tt.args...)
				if onLinux {
					args = append(args, "--server-pid", pid)
				}
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), args, &stdout, &stderr, noEnv)
				if code != 0 {
					t.Fatalf("exit %d; stderr: %s; stdout: %s", code, stderr.String(), stdout.String())
				}
				var rep struct {
					Calls        uint64            `json:"calls"`
					Errors       map[string]uint64 `json:"errors"`
					Transport    string            `json:"transport"`
					BytesPerCall float64           `json:"bytes_per_call"`
					ServerCPU    *float64          `json:"server_cpu_us_per_call"`
					Sent         uint64            `json:"sent"`
					Retries      uint64            `json:"retries"`
				}
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
					t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
				}
				if rep.Calls == 0 || len(rep.Errors) != 0 || rep.Transport != transport || rep.BytesPerCall <= 0 {
					t.Fatalf("calls %d, errors %v, transport %q, bytes/call %v", rep.Calls, rep.Errors, rep.Transport, rep.BytesPerCall)
				}
				if rep.Sent != rep.Calls || rep.Retries != 0 {
					t.Fatalf("sent %d calls, %d succeeded, %d retried; want all to succeed at once", rep.Sent, rep.Calls, rep.Retries)
				}
				if strings.Contains(strings.Join(tt.args, " "), "--count") && rep.Calls > 300 {
					t.Fatalf("%d calls, more than --count", rep.Calls)
				}
				if onLinux && rep.ServerCPU == nil {
					t.Fatal("no server CPU figure with --server-pid")
				}
				if svg, err := os.ReadFile(chart); err != nil || !bytes.Contains(svg, []byte("<polyline")) {
					t.Fatalf("chart: %v", err)
				}
			})
		}
	}

	t.Run("text", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"--addr", srv.TCPAddr, "--count", "50", "--warmup", "0s", "--duration", "300ms"}, &stdout, &stderr, noEnv)
		if code != 0 || !strings.Contains(stdout.String(), "calls/s") {
			t.Fatalf("exit %d, output %q, stderr %q", code, stdout.String(), stderr.String())
		}
	})

	t.Run("idle", func(t *testing.T) {
		if !onLinux {
			t.Skip("reads /proc")
		}
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"--addr", srv.TCPAddr, "--idle", "20", "--server-pid", pid, "--idle-settle", "300ms", "--json"}, &stdout, &stderr, noEnv)
		var rep struct {
			Conns   int               `json:"conns"`
			Errors  map[string]uint64 `json:"errors"`
			RSS     int64             `json:"rss_after_bytes"`
			Settle  []int64           `json:"rss_settle_bytes"`
			Settled int64             `json:"rss_settled_bytes"`
			SettleS float64           `json:"settle_s"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || code != 0 {
			t.Fatalf("exit %d, %v: %s %s", code, err, stdout.String(), stderr.String())
		}
		// The settled reading is the last of one every 300 ms: the first.
		if rep.Conns != 20 || len(rep.Errors) != 0 || rep.RSS <= 0 || len(rep.Settle) != 1 || rep.Settled != rep.Settle[0] || rep.SettleS < 0.3 {
			t.Fatalf("idle: %s", stdout.String())
		}
	})

	t.Run("burst", func(t *testing.T) {
		if !onLinux {
			t.Skip("reads /proc")
		}
		// 110 streams on each of 2 connections: 10 past the per-connection
		// limit of 100 on each.
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"--addr", srv.TCPAddr, "--burst", "streams", "--burst-conns", "2", "--burst-streams", "110",
			"--burst-wait", "0s", "--server-pid", pid, "--json"}, &stdout, &stderr, noEnv)
		var rep struct {
			Admitted    int               `json:"admitted"`
			Statuses    map[string]uint64 `json:"statuses"`
			StreamsOpen int               `json:"streams_open"`
			RSSAfter    []struct {
				Bytes int64 `json:"bytes"`
			} `json:"rss_after"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || code != 0 {
			t.Fatalf("exit %d, %v: %s %s", code, err, stdout.String(), stderr.String())
		}
		if rep.Admitted != 2 || rep.Statuses["RESOURCE_EXHAUSTED"] != 20 || rep.StreamsOpen != 200 || len(rep.RSSAfter) != 1 || rep.RSSAfter[0].Bytes <= 0 {
			t.Fatalf("burst: %s", stdout.String())
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"--addr", "127.0.0.1:1", "--duration", "300ms"}, &stdout, &stderr, noEnv); code != 1 {
			t.Fatalf("exit %d against a closed port, want 1", code)
		}
	})
}

// TestBenchRetriesAndTimeline loads, over each transport, a server that
// fails every other call with UNAVAILABLE: by default every such call is
// retried, counted and succeeds; with --retry=false they fail, none is
// retried, and the timeline adds up to the report either way.
func TestBenchRetriesAndTimeline(t *testing.T) {
	var handled atomic.Int64
	flaky := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if handled.Add(1)%2 == 0 {
			return nil, status.Error(codes.Unavailable, "flaky: try again")
		}
		return handler(ctx, req)
	}
	srv := calcdtest.Start(t, calcd.Config{UnaryInterceptors: []grpc.UnaryServerInterceptor{flaky}})
	addrs := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}
	for _, transport := range []string{"tcp", "grpc"} {
		for _, retry := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s retry=%v", transport, retry), func(t *testing.T) {
				handled.Store(0) // the first call, before the window, succeeds
				timeline := filepath.Join(t.TempDir(), "timeline")
				// One caller: the attempts alternate, so each call fails
				// once, then succeeds if retried (after about 100 ms).
				args := []string{"--transport", transport, "--addr", addrs[transport], "--warmup", "0s", "--count", "20",
					"--duration", "20s", "--json", "--timeline", timeline, "--retry=" + strconv.FormatBool(retry)}
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), args, &stdout, &stderr, noEnv)
				var rep struct {
					Sent    uint64            `json:"sent"`
					Calls   uint64            `json:"calls"`
					Retries uint64            `json:"retries"`
					Errors  map[string]uint64 `json:"errors"`
				}
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
					t.Fatalf("exit %d, %v: %s %s", code, err, stdout.String(), stderr.String())
				}
				failed := rep.Errors["UNAVAILABLE"]
				switch {
				case rep.Sent != 20 || rep.Calls+failed != 20 || len(rep.Errors) > 1:
					t.Fatalf("sent %d, calls %d, errors %v; want 20 calls sent and answered", rep.Sent, rep.Calls, rep.Errors)
				case retry && (code != 0 || failed != 0 || rep.Retries != 20):
					t.Fatalf("with retries: exit %d, %d failed, %d retries; want 0, 0 and 20", code, failed, rep.Retries)
				case !retry && (code != 1 || failed != 10 || rep.Retries != 0):
					t.Fatalf("without retries: exit %d, %d failed, %d retries; want 1, 10 and 0", code, failed, rep.Retries)
				}
				data, err := os.ReadFile(timeline)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(strings.TrimSpace(string(data)), "\n")
				if lines[0] != bench.TimelineHeader || len(lines) < 2 {
					t.Fatalf("timeline:\n%s", data)
				}
				var ok, bad uint64
				for _, l := range lines[1:] {
					var ms int64
					var o, f uint64
					if n, err := fmt.Sscanf(l, "%d %d %d", &ms, &o, &f); n != 3 || err != nil {
						t.Fatalf("timeline line %q: %v", l, err)
					}
					ok, bad = ok+o, bad+f
				}
				if ok != rep.Calls || bad != failed {
					t.Fatalf("timeline: %d ok, %d failed; report: %d calls, %d failed", ok, bad, rep.Calls, failed)
				}
			})
		}
	}
	t.Run("timeline not writable", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := []string{"--addr", srv.TCPAddr, "--count", "1", "--timeline", filepath.Join(t.TempDir(), "no", "such", "dir")}
		if code := run(context.Background(), args, &stdout, &stderr, noEnv); code != 1 || !strings.Contains(stderr.String(), "no such file") {
			t.Fatalf("exit %d, stderr %q; want 1 and the error", code, stderr.String())
		}
	})
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &stdout, &stderr, noEnv); code != 0 || !strings.HasPrefix(stdout.String(), "calc-bench ") || !strings.Contains(stdout.String(), ", commit ") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// lockedBuffer is a buffer written by run while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBenchMetricsAddr: --metrics-addr serves the client's grpc_client_*
// metrics, labelled with the transport, while the run goes on; a
// non-loopback address is refused.
func TestBenchMetricsAddr(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	addrRE := regexp.MustCompile(`serving metrics at (http://\S+/metrics)`)
	for _, tr := range []string{"tcp", "grpc"} {
		t.Run(tr, func(t *testing.T) {
			addr := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}[tr]
			var stdout, stderr lockedBuffer
			done := make(chan int, 1)
			go func() {
				done <- run(context.Background(), []string{"--transport", tr, "--addr", addr, "--concurrency", "2",
					"--warmup", "0s", "--duration", "3s", "--metrics-addr", "127.0.0.1:0"}, &stdout, &stderr, noEnv)
			}()
			want := `grpc_client_handled_total{grpc_code="OK",grpc_method="Calculate",grpc_service="calculator.v1.CalculatorService",grpc_type="unary",transport="` + tr + `"}`
			client := &http.Client{Timeout: 5 * time.Second}
			found := ""
			for found == "" {
				select {
				case code := <-done:
					t.Fatalf("calc-bench exited %d before a scrape showed %s; stderr %q", code, want, stderr.String())
				case <-time.After(20 * time.Millisecond):
				}
				m := addrRE.FindStringSubmatch(stderr.String())
				if m == nil {
					continue
				}
				resp, err := client.Get(m[1])
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for line := range strings.Lines(string(body)) {
					if v, ok := strings.CutPrefix(strings.TrimSpace(line), want+" "); ok && v != "0" {
						found = line
					}
				}
			}
			if code := <-done; code != 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--addr", srv.TCPAddr, "--metrics-addr", "0.0.0.0:0", "--duration", "1s"}, &stdout, &stderr, noEnv); code != 2 || !strings.Contains(stderr.String(), "not a loopback address") {
		t.Fatalf("--metrics-addr 0.0.0.0:0: exit %d, stderr %q", code, stderr.String())
	}
}

// TestBenchTracing: with the OTEL_* variables set, calc-bench's calls
// carry their span context to the server on both transports: every
// server span has the client's span as its remote parent. The client
// samples nothing (OTEL_TRACES_SAMPLER=always_off), so nothing is
// exported; the server records everything.
func TestBenchTracing(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	srv := calcdtest.Start(t, calcd.Config{TracerProvider: tp})
	for _, tr := range []string{"tcp", "grpc"} {
		addr := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}[tr]
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"--transport", tr, "--addr", addr, "--count", "20", "--warmup", "0s", "--duration", "5s"}, &stdout, &stderr, noEnv); code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", tr, code, stderr.String())
		}
	}
	deadline := time.Now().Add(10 * time.Second) // a gRPC server span ends after its answer
	for len(rec.Ended()) < 42 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	spans := rec.Ended()
	if len(spans) < 42 { // 20 measured calls and a first call per transport, at least
		t.Fatalf("%d server spans, want at least 42", len(spans))
	}
	for _, s := range spans {
		if p := s.Parent(); !p.IsValid() || !p.IsRemote() || p.IsSampled() {
			t.Fatalf("server span %s has parent %v (remote %v, sampled %v); want calc-bench's unsampled span", s.Name(), p.SpanID(), p.IsRemote(), p.IsSampled())
		}
	}
}
