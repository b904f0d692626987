package calcd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/server/admin"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/tcpserver"
)

// panicOn13 is the calculator, except that Calculate panics when lhs is 13.
type panicOn13 struct {
	calculatorv1.CalculatorServiceServer
}

func (p panicOn13) Calculate(ctx context.Context, req *calculatorv1.CalculateRequest) (*calculatorv1.CalculateResponse, error) {
	if req.GetLhs() == 13 {
		panic("13")
	}
	return p.CalculatorServiceServer.Calculate(ctx, req)
}

// get fetches an admin URL from 127.0.0.1 and returns its status and body.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics and parses it.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, addr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// value returns the value of the series of family name with exactly the
// given labels (a histogram's count), or -1 when there is none.
func value(families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	for _, m := range families[name].GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestMetricsByTransport makes a known number of calls on each transport
// and checks the per-RPC metrics, by transport, method and code, exactly:
// a panic counts as INTERNAL, and a stream's messages are counted.
func TestMetricsByTransport(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{Service: panicOn13{calculator.New()}, RPCMetrics: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type counts struct{ ok, invalid, internal, streamMsgs int }
	want := map[string]counts{"tcp": {3, 2, 1, 2}, "grpc": {5, 1, 1, 3}, "http": {2, 3, 1, 4}}
	add := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
	byZero := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_DIVIDE, Lhs: 1, Rhs: 0}
	panics := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 13, Rhs: 0}
	for tr, client := range srv.Clients(t) {
		n := want[tr]
		for _, c := range []struct {
			req   *calculatorv1.CalculateRequest
			times int
		}{{add, n.ok}, {byZero, n.invalid}, {panics, n.internal}} {
			for range c.times {
				_, _ = client.Calculate(ctx, c.req)
			}
		}
		s, err := client.CalculateStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n.streamMsgs {
			if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: add}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		_ = s.CloseSend()
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: stream end: %v", tr, err)
		}
	}

	families := scrape(t, srv.AdminAddr)
	const svc = "calculator.v1.CalculatorService"
	for tr, n := range want {
		unary := func(extra ...string) map[string]string {
			l := map[string]string{"transport": tr, "grpc_type": "unary", "grpc_service": svc, "grpc_method": "Calculate"}
			for i := 0; i < len(extra); i += 2 {
				l[extra[i]] = extra[i+1]
			}
			return l
		}
		bidi := map[string]string{"transport": tr, "grpc_type": "bidi_stream", "grpc_service": svc, "grpc_method": "CalculateStream"}
		total := float64(n.ok + n.invalid + n.internal)
		checks := []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"grpc_server_started_total", unary(), total},
			{"grpc_server_handled_total", unary("grpc_code", "OK"), float64(n.ok)},
			{"grpc_server_handled_total", unary("grpc_code", "InvalidArgument"), float64(n.invalid)},
			{"grpc_server_handled_total", unary("grpc_code", "Internal"), float64(n.internal)},
			{"grpc_server_handled_total", unary("grpc_code", "Unavailable"), -1},
			{"grpc_server_handling_seconds", unary(), total},
			{"grpc_server_msg_received_total", unary(), total},
			{"grpc_server_msg_sent_total", unary(), float64(n.ok)},
			{"grpc_server_started_total", bidi, 1},
			{"grpc_server_handled_total", merge(bidi, "grpc_code", "OK"), 1},
			{"grpc_server_msg_received_total", bidi, float64(n.streamMsgs)},
			{"grpc_server_msg_sent_total", bidi, float64(n.streamMsgs)},
		}
		for _, c := range checks {
			if got := value(families, c.name, c.labels); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "calc_tcp_connections_open", "calc_tcp_received_bytes_total"} {
		if families[name] == nil {
			t.Errorf("no %s in /metrics", name)
		}
	}
}

func merge(labels map[string]string, name, value string) map[string]string {
	out := map[string]string{name: value}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// TestMetricsLint: the registry passes promlint, with a call made on each
// transport so that every collector has series.
func TestMetricsLint(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{RPCMetrics: true})
	for _, client := range srv.Clients(t) {
		if _, err := client.Calculate(t.Context(), &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}); err != nil {
			t.Fatal(err)
		}
	}
	problems, err := testutil.GatherAndLint(srv.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestRPCMetricsOff: without RPCMetrics no per-RPC series exist (and no
// interceptor pays for them), while the raw TCP figures do.
func TestRPCMetricsOff(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	for _, client := range srv.Clients(t) {
		if _, err := client.Calculate(t.Context(), &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}); err != nil {
			t.Fatal(err)
		}
	}
	families, err := srv.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	if names["grpc_server_handled_total"] || names["grpc_server_started_total"] {
		t.Error("per-RPC metrics registered without RPCMetrics")
	}
	if !names["calc_tcp_received_bytes_total"] {
		t.Error("no calc_tcp_received_bytes_total")
	}
}

// TestTCPConnectionMetrics: calc_tcp_connections_open follows connections
// in and out, and a connection past MaxConnectionsPerAddr is counted as
// refused.
func TestTCPConnectionMetrics(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{TCP: tcpserver.Options{MaxConnectionsPerAddr: 2}})
	open := func() float64 {
		return value(scrape(t, srv.AdminAddr), "calc_tcp_connections_open", map[string]string{"transport": "tcp"})
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: /metrics shows %v open", what, open())
			}
		}
	}
	if got := open(); got != 0 {
		t.Fatalf("%v connections open before any", got)
	}
	c1 := srv.DialTCP(t, tcpconn.Options{})
	c2 := srv.DialTCP(t, tcpconn.Options{})
	waitFor("two open", func() bool { return open() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := tcpconn.Dial(ctx, srv.TCPAddr, tcpconn.Options{}); err == nil {
		t.Fatal("a third connection from 127.0.0.1 was admitted")
	}
	refused := func() float64 {
		return value(scrape(t, srv.AdminAddr), "calc_tcp_connections_refused_total", map[string]string{"reason": "per_addr", "transport": "tcp"})
	}
	waitFor("refusal counted", func() bool { return refused() == 1 })
	if got := value(scrape(t, srv.AdminAddr), "calc_tcp_goaways_sent_total", map[string]string{"code": "ResourceExhausted", "transport": "tcp"}); got != 1 {
		t.Errorf("GOAWAY RESOURCE_EXHAUSTED sent: %v, want 1", got)
	}
	c1.Close()
	c2.Close()
	waitFor("all closed", func() bool { return open() == 0 })
}

// TestRefusalMetrics: what the HTTP port refuses before any gRPC handler
// (grpc_server_* cannot see it) is calc_http_requests_refused_total by
// HTTP status; a refused WebSocket upgrade counts in
// calc_tcp_connections_refused_total{transport="ws"}; every GOAWAY code has
// a series before the first GOAWAY.
func TestRefusalMetrics(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{RPCMetrics: true})
	get := func(path string, want int) {
		t.Helper()
		resp, err := http.Get("http://" + srv.HTTPAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: HTTP %d, want %d", path, resp.StatusCode, want)
		}
	}
	get("/calculator.v1.CalculatorService/Nope", http.StatusNotFound)
	get("/v1/calculate?operator=OPERATOR_ADD&lhs=two", http.StatusBadRequest)        // the query does not decode
	get("/v1/calculate?operator=OPERATOR_DIVIDE&lhs=1&rhs=0", http.StatusBadRequest) // the service's answer: not a refusal
	get("/ws", http.StatusUpgradeRequired)
	m := scrape(t, srv.AdminAddr)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"calc_http_requests_refused_total", map[string]string{"code": "404"}, 1},
		{"calc_http_requests_refused_total", map[string]string{"code": "400"}, 1},
		{"calc_tcp_connections_refused_total", map[string]string{"reason": "not_websocket", "transport": "ws"}, 1},
		{"calc_tcp_connections_refused_total", map[string]string{"reason": "origin", "transport": "ws"}, -1}, // no series until it happens
		{"calc_tcp_connections_refused_total", map[string]string{"reason": "bad_preface", "transport": "tcp"}, 0},
		{"calc_tcp_goaways_sent_total", map[string]string{"code": "OK", "transport": "tcp"}, 0},
		{"calc_tcp_goaways_sent_total", map[string]string{"code": "ResourceExhausted", "transport": "ws"}, 0},
		{"calc_tcp_connections_open", map[string]string{"transport": "ws"}, 0},
		{"grpc_server_handled_total", map[string]string{"grpc_code": "InvalidArgument", "grpc_method": "Calculate",
			"grpc_service": "calculator.v1.CalculatorService", "grpc_type": "unary", "transport": "http"}, 1},
	} {
		if got := value(m, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

// TestReadiness: /healthz and /readyz answer 200 and calc_ready is 1 while
// serving; during a drain, held open by a stream, /readyz answers 503
// NOT_SERVING, calc_ready is 0 and /healthz still 200; the admin port
// closes once the drain is done.
func TestReadiness(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, srv.AdminAddr, path); code != http.StatusOK || body != "ok" {
			t.Fatalf("%s before the drain: %d %q", path, code, body)
		}
	}
	ready := func() float64 { return value(scrape(t, srv.AdminAddr), "calc_ready", map[string]string{}) }
	if got := ready(); got != 1 {
		t.Fatalf("calc_ready before the drain: %v, want 1", got)
	}
	s, err := srv.Clients(t)["tcp"].CalculateStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: 1, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- srv.Shutdown(ctx)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		code, body := get(t, srv.AdminAddr, "/readyz")
		if code == http.StatusServiceUnavailable && body == "NOT_SERVING" {
			break
		}
		if code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("/readyz during the drain: %d %q, want 503 NOT_SERVING", code, body)
		}
	}
	if code, body := get(t, srv.AdminAddr, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz during the drain: %d %q", code, body)
	}
	if got := ready(); got != 0 {
		t.Fatalf("calc_ready during the drain: %v, want 0", got)
	}
	_ = s.CloseSend() // the stream ends, and with it the drain
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if _, err := client.Get("http://" + srv.AdminAddr + "/healthz"); err == nil {
		t.Fatal("the admin port still answers after the drain")
	}
}

// TestPprofOnlyWhenAsked: the admin port serves profiles with
// Admin.Pprof, and 404 without.
func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			srv := calcdtest.Start(t, calcd.Config{Admin: admin.Options{Pprof: on}})
			want := http.StatusNotFound
			if on {
				want = http.StatusOK
			}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1"} {
				if code, _ := get(t, srv.AdminAddr, path); code != want {
					t.Errorf("%s: %d, want %d", path, code, want)
				}
			}
		})
	}
}
