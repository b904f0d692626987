package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	_ "github.com/calcrpc/calc/internal/grpcsnappy"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
)

// bin holds the calcd, calc and calc-bench binaries built for these tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "calcd-test")
	if err != nil {
		panic(err)
	}
	bin = dir
	for _, pkg := range []string{".", "../../../client/cmd/calc", "../../../bench/cmd/calc-bench"} {
		cmd := exec.Command("go", "build", "-race", "-o", dir, pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			panic("building " + pkg + ": " + err.Error())
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running calcd.
type process struct {
	cmd       *exec.Cmd
	grpcAddr  string
	tcpAddr   string
	adminAddr string // when calcd was given an admin address
	httpAddr  string // when calcd was given an HTTP address
	logs      *logBuffer
	exited    chan struct{} // closed when the process has exited
	exitErr   error         // cmd.Wait's result, set before exited closes
}

// logBuffer is a process's log, read by tests while it is written.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startCalcd runs the real calcd on free loopback ports and waits until
// both endpoints listen, and the admin port if env asks for one.
func startCalcd(t *testing.T, env ...string) *process {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "calcd"))
	cmd.Env = append(os.Environ(), append([]string{"CALCD_GRPC_ADDR=127.0.0.1:0", "CALCD_TCP_ADDR=127.0.0.1:0", "CALCD_LOG_LEVEL=debug"}, env...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: new(logBuffer), exited: make(chan struct{})}
	wantAdmin := slices.ContainsFunc(env, func(e string) bool {
		return strings.HasPrefix(e, "CALCD_ADMIN_ADDR=") || strings.HasPrefix(e, "CALCD_PPROF_ADDR=")
	})
	wantHTTP := slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "CALCD_HTTP_ADDR=") })
	ready := make(chan struct{})
	go func() {
		listening := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			p.logs.Write(append(line, '\n'))
			var rec struct{ Msg, Transport, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
				switch rec.Transport {
				case "grpc":
					p.grpcAddr = rec.Addr
				case "tcp":
					p.tcpAddr = rec.Addr
				case "admin":
					p.adminAddr = rec.Addr
				case "http":
					p.httpAddr = rec.Addr
				}
				if !listening && p.tcpAddr != "" && p.grpcAddr != "" && (p.adminAddr != "" || !wantAdmin) && (p.httpAddr != "" || !wantHTTP) {
					listening = true
					close(ready)
				}
			}
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("calcd did not start:\n%s", p.logs)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}

func (p *process) grpcConn(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
	conn, err := grpc.NewClient(p.grpcAddr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (p *process) tcpConn(t *testing.T) *tcpconn.Conn {
	conn, err := tcpconn.Dial(context.Background(), p.tcpAddr, tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestReflectionListsServices(t *testing.T) {
	p := startCalcd(t)
	stream, err := reflectionpb.NewServerReflectionClient(p.grpcConn(t)).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"calculator.v1.CalculatorService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

func TestCompressedGRPC(t *testing.T) {
	p := startCalcd(t)
	for _, name := range []string{"snappy", "gzip"} {
		client := calculatorv1.NewCalculatorServiceClient(p.grpcConn(t, grpc.WithDefaultCallOptions(grpc.UseCompressor(name))))
		long := strings.Repeat("1 + ", 500) + "1" // large enough to be worth compressing
		resp, err := client.Evaluate(context.Background(), &calculatorv1.EvaluateRequest{Expression: long})
		if err != nil || resp.GetResult() != "501" {
			t.Errorf("%s: %v, %v", name, resp, err)
		}
	}
}

// TestPipelined10k pipelines 10,000 calculations on one CalculateStream
// over each transport, sending them all before reading any answer.
func TestPipelined10k(t *testing.T) {
	p := startCalcd(t)
	clients := map[string]calculatorv1.CalculatorServiceClient{
		"tcp":  calculatorv1.NewCalculatorServiceClient(p.tcpConn(t)),
		"grpc": calculatorv1.NewCalculatorServiceClient(p.grpcConn(t)),
	}
	const n = 10000
	for tr, client := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		stream, err := client.CalculateStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for i := 1; i <= n; i++ {
				if err := stream.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_MULTIPLY, Lhs: int64(i), Rhs: int64(i)}}); err != nil {
					return
				}
			}
			stream.CloseSend()
		}()
		for i := 1; i <= n; i++ {
			resp, err := stream.Recv()
			if err != nil || resp.GetId() != uint64(i) || resp.GetResult() != int64(i)*int64(i) {
				t.Fatalf("%s: response %d: %v, %v", tr, i, resp, err)
			}
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: end of stream: %v", tr, err)
		}
		cancel()
	}
}

// TestSIGTERMDrains sends SIGTERM with a stream open on each transport: the
// health service reports NOT_SERVING, the open calls complete, and calcd
// exits 0.
func TestSIGTERMDrains(t *testing.T) {
	p := startCalcd(t)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(p.grpcConn(t)).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before SIGTERM: %v, %v", resp, err)
	}
	check, err := healthpb.NewHealthClient(p.grpcConn(t)).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "calculator.v1.CalculatorService"})
	if err != nil || check.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check: %v, %v", check, err)
	}
	streams := map[string]calculatorv1.CalculatorService_CalculateStreamClient{}
	for tr, client := range map[string]calculatorv1.CalculatorServiceClient{
		"tcp":  calculatorv1.NewCalculatorServiceClient(p.tcpConn(t)),
		"grpc": calculatorv1.NewCalculatorServiceClient(p.grpcConn(t)),
	} {
		s, err := client.CalculateStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: 1, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || r.GetResult() != 2 {
			t.Fatalf("%s: %v %v", tr, r, err)
		}
		streams[tr] = s
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after SIGTERM: %v, %v", resp, err)
	}
	stopWatch()                  // a watch is a call in flight too: the drain would wait for it
	for tr, s := range streams { // in-flight calls still complete
		if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: 2, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 2}}); err != nil {
			t.Fatalf("%s: send while draining: %v", tr, err)
		}
		if r, err := s.Recv(); err != nil || r.GetResult() != 4 {
			t.Fatalf("%s: while draining: %v %v", tr, r, err)
		}
		s.CloseSend()
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s: stream end while draining: %v", tr, err)
		}
	}
	select {
	case <-p.exited:
		if p.exitErr != nil {
			t.Fatalf("calcd exited with %v:\n%s", p.exitErr, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("calcd did not exit after SIGTERM")
	}
}

// TestCLI runs the calc command against calcd over both transports.
func TestCLI(t *testing.T) {
	p := startCalcd(t)
	tests := []struct {
		args   []string
		stdin  string
		stdout string
		stderr string
		code   int
	}{
		{args: []string{"2", "+", "3"}, stdout: "5\n"},
		{args: []string{"2 * (3 + 4)"}, stdout: "14\n"},
		{args: []string{"7", "/", "2"}, stdout: "3.5\n"},
		{args: []string{"-2", "^", "2"}, stdout: "-4\n"},
		{args: []string{"1", "/", "0"}, stderr: "calc: INVALID_ARGUMENT: division by zero at offset 2\n", code: 1},
		{args: []string{"--json", "1/3"}, stdout: `{"exact":false,"expression":"1/3","result":"0.3333333333333333333333333333333333"}` + "\n"},
		{stdin: "1 + 1\n\n2 * 3\n(1\n", stdout: "2\n6\n", stderr: "calc: INVALID_ARGUMENT: unbalanced '(' at offset 0\n", code: 1},
	}
	for _, transport := range []string{"tcp", "grpc"} {
		addr := p.tcpAddr
		if transport == "grpc" {
			addr = p.grpcAddr
		}
		for _, tt := range tests {
			t.Run(transport+"/"+strings.Join(tt.args, " "), func(t *testing.T) {
				cmd := exec.Command(filepath.Join(bin, "calc"), append([]string{"--transport", transport, "--addr", addr}, tt.args...)...)
				cmd.Stdin = strings.NewReader(tt.stdin)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				code := 0
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					code = exit.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if stdout.String() != tt.stdout || stderr.String() != tt.stderr || code != tt.code {
					t.Fatalf("got stdout %q stderr %q exit %d; want %q %q %d", stdout.String(), stderr.String(), code, tt.stdout, tt.stderr, tt.code)
				}
			})
		}
	}
}

// TestFlagsOverrideEnvironment checks calcd's configuration and its error
// for a bad value.
func TestFlagsOverrideEnvironment(t *testing.T) {
	out, err := exec.Command(filepath.Join(bin, "calcd"), "--log-level", "loud").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `invalid log level "loud"`) {
		t.Fatalf("bad log level: %v, %s", err, out)
	}
	out, err = exec.Command(filepath.Join(bin, "calcd"), "--tcp-dispatch", "threads").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `invalid --tcp-dispatch "threads"`) {
		t.Fatalf("bad dispatch model: %v, %s", err, out)
	}
	cmd := exec.Command(filepath.Join(bin, "calcd"), "--tcp-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CALCD_TCP_ADDR=256.0.0.1:1", "CALCD_GRPC_ADDR=127.0.0.1:0", "CALCD_SHUTDOWN_TIMEOUT=nope")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `invalid shutdown timeout "nope"`) {
		t.Fatalf("bad env value: %v, %s", err, out)
	}
}

// TestSIGTERMWithStreamsLeftOpen sends SIGTERM while a stream stays open
// on each transport and its client never half-closes: at the shutdown
// timeout both are ended with UNAVAILABLE, and calcd exits 0, the designed
// end of a drain.
func TestSIGTERMWithStreamsLeftOpen(t *testing.T) {
	p := startCalcd(t, "CALCD_SHUTDOWN_TIMEOUT=1s")
	streams := map[string]calculatorv1.CalculatorService_CalculateStreamClient{}
	for tr, client := range map[string]calculatorv1.CalculatorServiceClient{
		"tcp":  calculatorv1.NewCalculatorServiceClient(p.tcpConn(t)),
		"grpc": calculatorv1.NewCalculatorServiceClient(p.grpcConn(t)),
	} {
		s, err := client.CalculateStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: 1, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || r.GetResult() != 2 {
			t.Fatalf("%s: %v %v", tr, r, err)
		}
		streams[tr] = s
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for tr, s := range streams {
		if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
			t.Errorf("%s: stream at the drain deadline: %v, want UNAVAILABLE", tr, err)
		}
	}
	select {
	case <-p.exited:
		if p.exitErr != nil {
			t.Fatalf("calcd exited with %v:\n%s", p.exitErr, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("calcd did not exit after SIGTERM")
	}
	if !strings.Contains(p.logs.String(), "drain deadline reached") {
		t.Errorf("no drain-deadline warning in the logs:\n%s", p.logs)
	}
}

// TestHelpAndVersion checks that calcd --help exits 0 with the flags'
// usage, --version prints the version, and a bad flag exits 2.
func TestHelpAndVersion(t *testing.T) {
	calcd := filepath.Join(bin, "calcd")
	out, err := exec.Command(calcd, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-max-connections-per-addr") {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	out, err = exec.Command(calcd, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "calcd ") {
		t.Fatalf("--version: %v %q", err, out)
	}
	err = exec.Command(calcd, "--no-such-flag").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("bad flag: %v, want exit status 2", err)
	}
}

// httpGet fetches a URL on the admin port and returns status and body.
func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAdminPort runs calcd with the admin port configured each way: off by
// default, on with --admin-addr (pprof only with --admin-pprof), and the
// deprecated --pprof-addr, which bench.sh once used, as --admin-addr with
// --admin-pprof. /metrics shows a call made on each transport.
func TestAdminPort(t *testing.T) {
	tests := []struct {
		name      string
		env       []string
		wantPprof int    // the status of /debug/pprof/heap?debug=1; 0: no admin port
		wantLog   string // in calcd's log
	}{
		{"off by default", nil, 0, ""},
		{"admin-addr", []string{"CALCD_ADMIN_ADDR=127.0.0.1:0"}, http.StatusNotFound, `"transport":"admin"`},
		{"admin-pprof", []string{"CALCD_ADMIN_ADDR=127.0.0.1:0", "CALCD_ADMIN_PPROF=true"}, http.StatusOK, `"pprof":true`},
		{"pprof-addr", []string{"CALCD_PPROF_ADDR=127.0.0.1:0"}, http.StatusOK, "--pprof-addr (CALCD_PPROF_ADDR) is deprecated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startCalcd(t, tt.env...)
			if tt.wantPprof == 0 {
				if p.adminAddr != "" || strings.Contains(p.logs.String(), `"transport":"admin"`) {
					t.Fatalf("an admin port without --admin-addr:\n%s", p.logs)
				}
				return
			}
			if !strings.Contains(p.logs.String(), tt.wantLog) {
				t.Errorf("no %s in the log:\n%s", tt.wantLog, p.logs)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 2}
			for _, cc := range []grpc.ClientConnInterface{p.tcpConn(t), p.grpcConn(t)} {
				if _, err := calculatorv1.NewCalculatorServiceClient(cc).Calculate(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			code, body := httpGet(t, p.adminAddr, "/metrics")
			for _, tr := range []string{"tcp", "grpc"} {
				series := `grpc_server_handled_total{grpc_code="OK",grpc_method="Calculate",grpc_service="calculator.v1.CalculatorService",grpc_type="unary",transport="` + tr + `"} 1`
				if code != http.StatusOK || !strings.Contains(body, series) {
					t.Errorf("/metrics: %d, no %s in:\n%s", code, series, body)
				}
			}
			for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusOK, "/debug/pprof/heap?debug=1": tt.wantPprof} {
				if code, body := httpGet(t, p.adminAddr, path); code != want {
					t.Errorf("%s: %d %q, want %d", path, code, body, want)
				}
			}
		})
	}
}

// TestAdminFlagErrors: a bad --admin-pprof value, and --pprof-addr beside
// a different --admin-addr, are refused before calcd listens.
func TestAdminFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  []string
		want string
	}{
		{nil, []string{"CALCD_ADMIN_PPROF=maybe"}, `invalid admin-pprof "maybe" (env CALCD_ADMIN_PPROF)`},
		{[]string{"--admin-pprof=maybe"}, nil, "invalid boolean value"},
		{[]string{"--pprof-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:9464"}, nil, "--pprof-addr is deprecated"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append(tt.env, tt.args...), " "), func(t *testing.T) {
			cmd := exec.Command(filepath.Join(bin, "calcd"), tt.args...)
			cmd.Env = append(os.Environ(), append([]string{"CALCD_GRPC_ADDR=127.0.0.1:0", "CALCD_TCP_ADDR=127.0.0.1:0"}, tt.env...)...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("%v, %s; want a failure with %q", err, out, tt.want)
			}
		})
	}
}

// TestAuthTokensFile: with --auth-tokens, calls need a token on both
// transports; editing the file changes who may call, with no restart; a
// file that cannot be read stops calcd at start with exit status 1 and a
// message that names the file and no secret.
func TestAuthTokensFile(t *testing.T) {
	digest := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	path := filepath.Join(t.TempDir(), "auth.json")
	write := func(token string) {
		t.Helper()
		body := `{"principals": [{"name": "app", "token_sha256": "` + digest(token) + `", "methods": ["*"]}]}`
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-token")
	p := startCalcd(t, "CALCD_AUTH_TOKENS="+path)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := map[string]calculatorv1.CalculatorServiceClient{
		"tcp":  calculatorv1.NewCalculatorServiceClient(p.tcpConn(t)),
		"grpc": calculatorv1.NewCalculatorServiceClient(p.grpcConn(t)),
	}
	add := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
	bearer := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	for tr, c := range clients {
		if _, err := c.Calculate(ctx, add); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: no token: %v, want UNAUTHENTICATED", tr, err)
		}
		if _, err := c.Calculate(bearer("first-token"), add); err != nil {
			t.Errorf("%s: the token: %v", tr, err)
		}
	}
	write("second-token") // picked up within the poll interval, or at once by SIGHUP
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for tr, c := range clients {
		for {
			_, err := c.Calculate(bearer("second-token"), add)
			if err == nil {
				break
			}
			if status.Code(err) != codes.Unauthenticated || ctx.Err() != nil {
				t.Fatalf("%s: the new token: %v", tr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := c.Calculate(bearer("first-token"), add); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: the old token after the reload: %v", tr, err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.exited // the log is complete
	if !strings.Contains(p.logs.String(), "auth: policy reloaded") {
		t.Errorf("no reload in the log:\n%s", p.logs)
	}
	if strings.Contains(p.logs.String(), "first-token") || strings.Contains(p.logs.String(), digest("first-token")) {
		t.Errorf("a token or its digest reached the log:\n%s", p.logs)
	}

	out, err := exec.Command(filepath.Join(bin, "calcd"), "--auth-tokens", filepath.Join(t.TempDir(), "missing.json"), "--tcp-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "--auth-tokens") || !strings.Contains(string(out), "missing.json") {
		t.Fatalf("a missing policy file: %v\n%s", err, out)
	}
}

// TestHTTPPort: with --http-addr calcd serves REST and Connect on it, with
// CORS for --http-cors-origins, and SIGTERM lets a Connect stream open on
// it finish before calcd exits 0.
func TestHTTPPort(t *testing.T) {
	p := startCalcd(t, "CALCD_HTTP_ADDR=127.0.0.1:0", "CALCD_HTTP_CORS_ORIGINS=https://app.example, https://other.example")
	resp, err := http.Get("http://" + p.httpAddr + "/v1/calculate?operator=OPERATOR_ADD&lhs=2&rhs=3")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.ReplaceAll(string(body), " ", "") != `{"result":"5"}` {
		t.Errorf("REST: %s %s", resp.Status, body)
	}
	req, err := http.NewRequest(http.MethodOptions, "http://"+p.httpAddr+"/v1/evaluate", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "https://other.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://other.example" {
		t.Errorf("CORS preflight: %s %v", resp.Status, resp.Header)
	}

	s, err := calcdtest.NewConnectClient(calcdtest.HTTPClientFor(t, true, nil), "http://"+p.httpAddr).CalculateStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ask := func(i int64) {
		t.Helper()
		if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: i, Rhs: i}}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Recv(); err != nil || r.GetResult() != 2*i {
			t.Fatalf("%d+%d: %v %v", i, i, r, err)
		}
	}
	ask(1)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.logs.String(), `"msg":"draining"`) {
		time.Sleep(10 * time.Millisecond)
	}
	ask(2)
	s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end while draining: %v", err)
	}
	select {
	case <-p.exited:
		if p.exitErr != nil {
			t.Fatalf("calcd exited with %v:\n%s", p.exitErr, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("calcd did not exit after SIGTERM")
	}
}

// TestHTTPFlagErrors: CORS origins without an HTTP port are a usage
// error, and protected mode covers --http-addr.
func TestHTTPFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		exit int
		want string
	}{
		{[]string{"--http-cors-origins", "https://app.example"}, 1, "--http-cors-origins needs --http-addr"},
		{[]string{"--http-addr", "0.0.0.0:0"}, 2, "protected mode: refusing to listen on --http-addr 0.0.0.0:0"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := exec.Command(filepath.Join(bin, "calcd"), tt.args...)
			cmd.Env = append(os.Environ(), "CALCD_GRPC_ADDR=127.0.0.1:0", "CALCD_TCP_ADDR=127.0.0.1:0")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tt.exit || !strings.Contains(string(out), tt.want) {
				t.Fatalf("%v, %s; want exit status %d and %q", err, out, tt.exit, tt.want)
			}
		})
	}
}
