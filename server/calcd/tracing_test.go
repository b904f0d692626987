package calcd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/dial"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
	"github.com/calcrpc/calc/server/calculator"
)

// recorder is an in-memory TracerProvider and what it recorded.
type recorder struct {
	spans *tracetest.SpanRecorder
	tp    *sdktrace.TracerProvider
}

func newRecorder(t *testing.T, opts ...sdktrace.TracerProviderOption) recorder {
	r := recorder{spans: tracetest.NewSpanRecorder()}
	r.tp = sdktrace.NewTracerProvider(append(opts, sdktrace.WithSpanProcessor(r.spans))...)
	t.Cleanup(func() { _ = r.tp.Shutdown(context.Background()) })
	return r
}

// wait returns the ended spans once there are n of them. A gRPC server
// ends its span after it has answered, so the caller may get there first.
func (r recorder) wait(t *testing.T, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := r.spans.Ended()
		if len(spans) >= n || time.Now().After(deadline) {
			if len(spans) != n {
				t.Fatalf("%d spans ended, want %d", len(spans), n)
			}
			return spans
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a log destination the test reads while calcd writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// calls returns the access log's "call" records.
func (s *syncBuffer) calls(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(s.b.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "call" {
			out = append(out, rec)
		}
	}
	return out
}

// tracedCall is one call the trace test makes, and what its spans say.
type tracedCall struct {
	name      string
	req       *calculatorv1.CalculateRequest // nil: a CalculateStream of two messages
	code      codes.Code
	serverErr bool // the server span's status is Error
}

var tracedCalls = []tracedCall{
	{name: "ok", req: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}, code: codes.OK},
	{name: "invalid", req: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_DIVIDE, Lhs: 1, Rhs: 0}, code: codes.InvalidArgument},
	{name: "panic", req: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 13, Rhs: 0}, code: codes.Internal, serverErr: true},
	{name: "stream", code: codes.OK},
}

// callTraced makes c on client and returns its status code.
func callTraced(t *testing.T, client calculatorv1.CalculatorServiceClient, c tracedCall) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.req != nil {
		_, err := client.Calculate(ctx, c.req)
		return status.Code(err)
	}
	s, err := client.CalculateStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	add := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}
	for i := range 2 {
		if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: add}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.CloseSend()
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return codes.OK
			}
			return status.Code(err)
		}
	}
}

// spanPair is a call's client and server spans.
type spanPair struct{ client, server sdktrace.ReadOnlySpan }

// traceCalls starts a calcd traced by its own provider, makes every
// tracedCall over transport with a Go client traced by another, and
// returns each call's spans, checking that every call has exactly one
// client and one server span, in one trace, the server's the child of the
// client's, and that the access log carries the trace.
func traceCalls(t *testing.T, transport string) (pairs []spanPair, port int) {
	t.Helper()
	srvRec, cliRec := newRecorder(t), newRecorder(t)
	var logs syncBuffer
	srv := calcdtest.Start(t, calcd.Config{
		Service:        panicOn13{calculator.New()},
		TracerProvider: srvRec.tp,
		AccessLogEvery: 1,
		Logger:         slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	addr := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}[transport]
	cc, closeConn, err := dial.Open(context.Background(), dial.Config{Addr: addr, Transport: transport, Compression: "none", TracerProvider: cliRec.tp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	client := calculatorv1.NewCalculatorServiceClient(cc)
	for _, c := range tracedCalls {
		if got := callTraced(t, client, c); got != c.code {
			t.Fatalf("%s: %s call %s: %v, want %v", transport, c.name, c.name, got, c.code)
		}
	}
	// Client spans end in call order, as each call returns; a gRPC server
	// span may end after its call returned, so they are matched by trace.
	clientSpans, serverSpans := cliRec.wait(t, len(tracedCalls)), srvRec.wait(t, len(tracedCalls))
	byTrace := map[trace.TraceID]sdktrace.ReadOnlySpan{}
	for _, ss := range serverSpans {
		if _, dup := byTrace[ss.SpanContext().TraceID()]; dup {
			t.Fatalf("%s: two server spans in trace %v", transport, ss.SpanContext().TraceID())
		}
		byTrace[ss.SpanContext().TraceID()] = ss
	}
	for i := range tracedCalls {
		cs := clientSpans[i]
		ss, ok := byTrace[cs.SpanContext().TraceID()]
		switch {
		case !ok:
			t.Fatalf("%s call %d: no server span in the client span's trace %v", transport, i, cs.SpanContext().TraceID())
		case cs.SpanKind() != trace.SpanKindClient || ss.SpanKind() != trace.SpanKindServer:
			t.Errorf("%s call %d: kinds %v and %v", transport, i, cs.SpanKind(), ss.SpanKind())
		case ss.Parent().SpanID() != cs.SpanContext().SpanID() || !ss.Parent().IsRemote():
			t.Errorf("%s call %d: server span's parent %v (remote %v), want the client span %v", transport, i, ss.Parent().SpanID(), ss.Parent().IsRemote(), cs.SpanContext().SpanID())
		case cs.Parent().IsValid():
			t.Errorf("%s call %d: the client span has a parent", transport, i)
		}
		pairs = append(pairs, spanPair{cs, ss})
	}
	// The access log: one record per call, with the server span's ids.
	var logged []string
	for _, rec := range logs.calls(t) {
		logged = append(logged, rec["trace_id"].(string)+"/"+rec["span_id"].(string))
	}
	for _, p := range pairs {
		sc := p.server.SpanContext()
		if id := sc.TraceID().String() + "/" + sc.SpanID().String(); !slices.Contains(logged, id) {
			t.Errorf("%s: no access log record with trace_id/span_id %s in %v", transport, id, logged)
		}
	}
	if len(logged) != len(tracedCalls) {
		t.Errorf("%s: %d access log records, want %d", transport, len(logged), len(tracedCalls))
	}
	_, p, _ := net.SplitHostPort(addr)
	port, _ = strconv.Atoi(p)
	return pairs, port
}

// attrs returns a span's attributes as a map.
func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// TestTraceAcrossTransports: a Go client call over each transport yields
// one client span and one server span in the same trace, the server's the
// remote child of the client's, named and attributed as otelgrpc does,
// with the status code attribute and the span status of an error; the
// raw TCP spans equal the gRPC ones but for the port; and the access log
// carries the trace.
func TestTraceAcrossTransports(t *testing.T) {
	got := map[string][]spanPair{}
	ports := map[string]int{}
	for _, tr := range calcdtest.Transports {
		got[tr], ports[tr] = traceCalls(t, tr)
	}
	for _, tr := range calcdtest.Transports {
		for i, c := range tracedCalls {
			method := "calculator.v1.CalculatorService/Calculate"
			if c.req == nil {
				method = "calculator.v1.CalculatorService/CalculateStream"
			}
			want := map[string]string{
				"rpc.system.name":          "grpc",
				"rpc.method":               method,
				"rpc.response.status_code": map[codes.Code]string{codes.OK: "OK", codes.InvalidArgument: "INVALID_ARGUMENT", codes.Internal: "INTERNAL"}[c.code],
				"server.address":           "127.0.0.1",
				"server.port":              strconv.Itoa(ports[tr]),
			}
			for side, s := range map[string]sdktrace.ReadOnlySpan{"client": got[tr][i].client, "server": got[tr][i].server} {
				if s.Name() != method {
					t.Errorf("%s %s %s span named %q, want %q", tr, c.name, side, s.Name(), method)
				}
				if a := attrs(s); !mapsEqual(a, want) {
					t.Errorf("%s %s %s span attributes\n%v, want\n%v", tr, c.name, side, a, want)
				}
				wantStatus := otelcodes.Unset
				if c.code != codes.OK && (side == "client" || c.serverErr) {
					wantStatus = otelcodes.Error
				}
				if s.Status().Code != wantStatus {
					t.Errorf("%s %s %s span status %v, want %v", tr, c.name, side, s.Status(), wantStatus)
				}
				if wantStatus == otelcodes.Error && s.Status().Description == "" {
					t.Errorf("%s %s %s span: an Error status without the message", tr, c.name, side)
				}
				if s.InstrumentationScope().Name != "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc" {
					t.Errorf("%s %s %s span scope %v", tr, c.name, side, s.InstrumentationScope())
				}
			}
		}
	}
	for i, c := range tracedCalls {
		for j, side := range []string{"client", "server"} {
			tcp, grpc := [2]sdktrace.ReadOnlySpan{got["tcp"][i].client, got["tcp"][i].server}[j], [2]sdktrace.ReadOnlySpan{got["grpc"][i].client, got["grpc"][i].server}[j]
			if tcp.Status() != grpc.Status() {
				t.Errorf("%s %s span status: tcp %v, grpc %v", c.name, side, tcp.Status(), grpc.Status())
			}
		}
	}
}

// TestTraceSemconvModes: under OTEL_SEMCONV_STABILITY_OPT_IN=rpc/old and
// rpc/dup, as under the default, raw TCP's spans carry exactly the
// attributes otelgrpc gives gRPC's, but for the port.
func TestTraceSemconvModes(t *testing.T) {
	for _, mode := range []string{"", "rpc/old", "rpc/dup"} {
		t.Run("mode="+mode, func(t *testing.T) {
			t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", mode)
			tcp, _ := traceCalls(t, "tcp")
			grpc, _ := traceCalls(t, "grpc")
			for i, c := range tracedCalls {
				for _, side := range []string{"client", "server"} {
					a, b := tcp[i].client, grpc[i].client
					if side == "server" {
						a, b = tcp[i].server, grpc[i].server
					}
					at, bt := withoutPort(a.Attributes()), withoutPort(b.Attributes())
					if !slices.Equal(at, bt) {
						t.Errorf("%s %s span: tcp %v, grpc %v", c.name, side, at, bt)
					}
					if a.Name() != b.Name() || a.SpanKind() != b.SpanKind() || a.Status() != b.Status() {
						t.Errorf("%s %s span: tcp %q %v %v, grpc %q %v %v", c.name, side, a.Name(), a.SpanKind(), a.Status(), b.Name(), b.SpanKind(), b.Status())
					}
				}
			}
			if mode == "rpc/old" {
				want := map[string]string{"rpc.system": "grpc", "rpc.service": "calculator.v1.CalculatorService", "rpc.method": "Calculate"}
				for k, v := range want {
					if got := attrs(tcp[0].server)[k]; got != v {
						t.Errorf("rpc/old: %s = %q, want %q", k, got, v)
					}
				}
			}
		})
	}
}

// withoutPort returns the attributes, sorted by key, without server.port.
func withoutPort(kvs []attribute.KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		if kv.Key != "server.port" {
			out = append(out, string(kv.Key)+"="+kv.Value.Emit())
		}
	}
	slices.Sort(out)
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestTraceOff: with tracing off on the server, a traced client's calls
// make client spans only and the access log names no trace; with it off
// on the client, the server's spans start their own traces.
func TestTraceOff(t *testing.T) {
	for _, tr := range calcdtest.Transports {
		t.Run(tr, func(t *testing.T) {
			cliRec := newRecorder(t)
			var logs syncBuffer
			srv := calcdtest.Start(t, calcd.Config{AccessLogEvery: 1, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			addr := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}[tr]
			cc, closeConn, err := dial.Open(context.Background(), dial.Config{Addr: addr, Transport: tr, Compression: "none", TracerProvider: cliRec.tp}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer closeConn()
			if got := callTraced(t, calculatorv1.NewCalculatorServiceClient(cc), tracedCalls[0]); got != codes.OK {
				t.Fatal(got)
			}
			cliRec.wait(t, 1)
			for _, rec := range logs.calls(t) {
				if _, ok := rec["trace_id"]; ok {
					t.Errorf("tracing off, yet the access log has a trace: %v", rec)
				}
			}

			srvRec := newRecorder(t)
			srv = calcdtest.Start(t, calcd.Config{TracerProvider: srvRec.tp})
			addr = map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}[tr]
			cc, closeConn2, err := dial.Open(context.Background(), dial.Config{Addr: addr, Transport: tr, Compression: "none"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer closeConn2()
			if got := callTraced(t, calculatorv1.NewCalculatorServiceClient(cc), tracedCalls[0]); got != codes.OK {
				t.Fatal(got)
			}
			if s := srvRec.wait(t, 1)[0]; s.Parent().IsValid() {
				t.Errorf("an untraced client's call has a server span with a parent: %v", s.Parent())
			}
		})
	}
}

// TestTraceNotSampled: with a sampler that samples nothing, no span is
// recorded on either side, yet the server still joins the client's trace
// (its access log carries the trace id the client sent, not sampled).
func TestTraceNotSampled(t *testing.T) {
	for _, tr := range calcdtest.Transports {
		t.Run(tr, func(t *testing.T) {
			off := sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample()))
			srvRec, cliRec := newRecorder(t, off), newRecorder(t, off)
			var logs syncBuffer
			srv := calcdtest.Start(t, calcd.Config{TracerProvider: srvRec.tp, AccessLogEvery: 1, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			addr := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}[tr]
			cc, closeConn, err := dial.Open(context.Background(), dial.Config{Addr: addr, Transport: tr, Compression: "none", TracerProvider: cliRec.tp}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer closeConn()
			tracer := cliRec.tp.Tracer("test")
			ctx, parent := tracer.Start(context.Background(), "parent")
			_, err = calculatorv1.NewCalculatorServiceClient(cc).Calculate(ctx, tracedCalls[0].req)
			parent.End()
			if err != nil {
				t.Fatal(err)
			}
			recs := logs.calls(t)
			if len(recs) != 1 || recs[0]["trace_id"] != parent.SpanContext().TraceID().String() {
				t.Errorf("access log %v, want one record of trace %v", recs, parent.SpanContext().TraceID())
			}
			if n := len(cliRec.spans.Ended()) + len(srvRec.spans.Ended()); n != 0 {
				t.Errorf("%d spans recorded, want none", n)
			}
		})
	}
}

// TestTraceOnlyJoins: with TraceOnlyJoins, a raw TCP call that carries no
// trace context gets no span and its access log record names no trace,
// while one in a caller's trace gets its span as usual; gRPC calls are
// traced either way.
func TestTraceOnlyJoins(t *testing.T) {
	srvRec, cliRec := newRecorder(t), newRecorder(t)
	var logs syncBuffer
	srv := calcdtest.Start(t, calcd.Config{TracerProvider: srvRec.tp, TraceOnlyJoins: true, AccessLogEvery: 1, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	for _, traced := range []bool{false, true} {
		for _, tr := range calcdtest.Transports {
			cfg := dial.Config{Addr: map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}[tr], Transport: tr, Compression: "none"}
			if traced {
				cfg.TracerProvider = cliRec.tp
			}
			cc, closeConn, err := dial.Open(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []tracedCall{tracedCalls[0], tracedCalls[3]} { // a unary call and a stream
				if got := callTraced(t, calculatorv1.NewCalculatorServiceClient(cc), c); got != codes.OK {
					t.Fatalf("%s %s: %v", tr, c.name, got)
				}
			}
			closeConn()
		}
	}
	// Untraced: grpc's 2; traced: tcp's 2 and grpc's 2.
	spans := srvRec.wait(t, 6)
	var joined int
	for _, s := range spans {
		if s.Parent().IsValid() {
			joined++
		}
	}
	if joined != 4 {
		t.Errorf("%d server spans in a caller's trace, want 4", joined)
	}
	var withTrace int
	for _, rec := range logs.calls(t) {
		if _, ok := rec["trace_id"]; ok {
			withTrace++
		}
	}
	if withTrace != 6 {
		t.Errorf("%d access log records with a trace, want 6 (all but the untraced raw TCP calls)", withTrace)
	}
}

// TestTraceReplacesCallersTraceparent: a traced client sends its own
// span's context even when the call's metadata already holds a
// traceparent, on both transports (one value, not two).
func TestTraceReplacesCallersTraceparent(t *testing.T) {
	for _, tr := range calcdtest.Transports {
		t.Run(tr, func(t *testing.T) {
			srvRec, cliRec := newRecorder(t), newRecorder(t)
			srv := calcdtest.Start(t, calcd.Config{TracerProvider: srvRec.tp})
			addr := map[string]string{"tcp": srv.TCPAddr, "grpc": srv.GRPCAddr}[tr]
			cc, closeConn, err := dial.Open(context.Background(), dial.Config{Addr: addr, Transport: tr, Compression: "none", TracerProvider: cliRec.tp}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer closeConn()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			if _, err := calculatorv1.NewCalculatorServiceClient(cc).Calculate(ctx, tracedCalls[0].req); err != nil {
				t.Fatal(err)
			}
			cs, ss := cliRec.wait(t, 1)[0], srvRec.wait(t, 1)[0]
			if ss.Parent().SpanID() != cs.SpanContext().SpanID() {
				t.Errorf("server span's parent %v, want the client span %v", ss.Parent().SpanID(), cs.SpanContext().SpanID())
			}
		})
	}
}
