package main_test

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
)

// otlpReceiver is the smallest OTLP trace receiver: it keeps the spans
// exported to it over gRPC or over HTTP (/v1/traces, protobuf), with the
// service.name of their resource.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string][]*tracepb.Span // by service.name
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans[service] = append(r.spans[service], ss.GetSpans()...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var in coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &in)
	}
	if req.URL.Path != "/v1/traces" || err != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	out, _ := r.Export(req.Context(), &in)
	b, _ := proto.Marshal(out)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

// startReceiver serves an otlpReceiver on loopback over protocol ("grpc"
// or "http/protobuf") and returns it with its endpoint URL.
func startReceiver(t *testing.T, protocol string) (*otlpReceiver, string) {
	t.Helper()
	r := &otlpReceiver{spans: map[string][]*tracepb.Span{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if protocol == "grpc" {
		gs := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(gs, r)
		go func() { _ = gs.Serve(l) }()
		t.Cleanup(gs.Stop)
	} else {
		hs := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(l) }()
		t.Cleanup(func() { hs.Close() })
	}
	return r, "http://" + l.Addr().String()
}

// TestTracingExport runs calcd with the OTEL_* variables pointing at a
// receiver on loopback, over each OTLP protocol, calls it over both
// transports with a sampled W3C traceparent, stops it, and finds both
// server spans exported (at exit at the latest) in the caller's trace,
// the children of its span, from service calcd; the access log names the
// trace.
func TestTracingExport(t *testing.T) {
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(protocol, func(t *testing.T) {
			recv, endpoint := startReceiver(t, protocol)
			p := startCalcd(t, "OTEL_EXPORTER_OTLP_ENDPOINT="+endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL="+protocol)
			const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+parentID+"-01")
			req := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
			for tr, client := range map[string]calculatorv1.CalculatorServiceClient{
				"tcp":  calculatorv1.NewCalculatorServiceClient(p.tcpConn(t)),
				"grpc": calculatorv1.NewCalculatorServiceClient(p.grpcConn(t)),
			} {
				if resp, err := client.Calculate(ctx, req); err != nil || resp.GetResult() != 5 {
					t.Fatalf("%s: %v, %v", tr, resp, err)
				}
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			<-p.exited
			if p.exitErr != nil {
				t.Fatalf("calcd: %v\n%s", p.exitErr, p.logs)
			}
			recv.mu.Lock()
			spans := recv.spans["calcd"]
			recv.mu.Unlock()
			if len(spans) != 2 {
				t.Fatalf("%d spans from service calcd (%v), want 2\n%s", len(spans), recv.spans, p.logs)
			}
			for _, s := range spans {
				if hex.EncodeToString(s.GetTraceId()) != traceID || hex.EncodeToString(s.GetParentSpanId()) != parentID ||
					s.GetName() != "calculator.v1.CalculatorService/Calculate" || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
					t.Errorf("span %v, want a server span of Calculate, child of %s in trace %s", s, parentID, traceID)
				}
			}
			logs := p.logs.String()
			if !strings.Contains(logs, `"msg":"tracing","export":"otlp `+protocol+` to `+endpoint) {
				t.Errorf("no tracing record naming %s and %s:\n%s", protocol, endpoint, logs)
			}
			if n := strings.Count(logs, `"trace_id":"`+traceID+`"`); n != 2 {
				t.Errorf("%d access log records with the trace id, want 2:\n%s", n, logs)
			}
		})
	}
}

// TestTracingEnvErrors: an unsupported exporter, protocol or propagator
// stops calcd before it listens, naming the variable.
func TestTracingEnvErrors(t *testing.T) {
	for _, env := range []string{"OTEL_TRACES_EXPORTER=zipkin", "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1 OTEL_EXPORTER_OTLP_PROTOCOL=http/json", "OTEL_TRACES_EXPORTER=otlp OTEL_PROPAGATORS=b3"} {
		t.Run(env, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "calcd"))
			cmd.Env = append(os.Environ(), append(strings.Fields(env), "CALCD_GRPC_ADDR=127.0.0.1:0", "CALCD_TCP_ADDR=127.0.0.1:0")...)
			out, err := cmd.CombinedOutput()
			name := strings.SplitN(strings.Fields(env)[len(strings.Fields(env))-1], "=", 2)[0]
			if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(out), "calcd: tracing: "+name) {
				t.Errorf("exit %d (%v), output %q; want 1 and an error naming %s", code, err, out, name)
			}
		})
	}
}
