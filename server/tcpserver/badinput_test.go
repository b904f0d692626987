package tcpserver_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

const calculate = "/calculator.v1.CalculatorService/Calculate"

// stillServes checks that a normal call on a new connection works.
func stillServes(t *testing.T, srv *testServer) {
	t.Helper()
	client := calculatorv1.NewCalculatorServiceClient(srv.DialTCP(t, tcpconnOptions))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	if err != nil || resp.GetResult() != 5 {
		t.Fatalf("server no longer serves: %v, %v", resp, err)
	}
}

// dial opens a raw connection; with handshake it sends the preface and
// reads SETTINGS.
func dial(t testing.TB, addr string, handshake bool) (net.Conn, *wire.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	rd := wire.NewReader(nc, 0)
	if handshake {
		if _, err := nc.Write(wire.AppendPreface(nil)); err != nil {
			t.Fatal(err)
		}
		if f, err := rd.ReadFrame(); err != nil || f.Kind != wire.KindSettings {
			t.Fatalf("handshake: %v %v", f.Kind, err)
		}
	}
	return nc, rd
}

// request builds a REQUEST frame binding ref 1 to method.
func request(id uint32, method string, flags wire.Flags, msg []byte) []byte {
	return requestRef(id, 1, method, flags, msg)
}

// requestRef builds a REQUEST frame binding ref to method.
func requestRef(id, ref uint32, method string, flags wire.Flags, msg []byte) []byte {
	p, hflags := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: ref, MethodName: method})
	return wire.AppendFrame(nil, wire.KindRequest, flags|hflags, id, append(p, msg...))
}

// answer is an expected frame from the server.
type answer struct {
	kind wire.Kind
	id   uint32
	code codes.Code
}

// expectFrames reads frames and compares kind, id and status code; with
// closes it then expects the server to close the connection.
func expectFrames(t *testing.T, rd *wire.Reader, want []answer, closes bool) {
	t.Helper()
	for i, w := range want {
		f, err := rd.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v, want %s", i, err, w.kind)
		}
		var code codes.Code
		switch f.Kind {
		case wire.KindStatus:
			st, err := wire.ParseStatus(f.Payload)
			if err != nil {
				t.Fatal(err)
			}
			code = codes.Code(st.GetCode())
			t.Logf("STATUS %d: %s: %s", f.ID, code, st.GetMessage())
		case wire.KindGoAway:
			_, st, err := wire.ParseGoAway(f.Payload)
			if err != nil {
				t.Fatal(err)
			}
			code = codes.Code(st.GetCode())
			t.Logf("GOAWAY: %s: %s", code, st.GetMessage())
		}
		if f.Kind != w.kind || f.ID != w.id || code != w.code {
			t.Fatalf("frame %d: %s id %d code %s; want %s id %d code %s", i, f.Kind, f.ID, code, w.kind, w.id, w.code)
		}
	}
	if closes {
		if f, err := rd.ReadFrame(); !errors.Is(err, io.EOF) && (err == nil || !isReset(err)) {
			t.Fatalf("want the server to close; got %v %v", f.Kind, err)
		}
	}
}

func TestBadInputAfterHandshake(t *testing.T) {
	calcMsg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	bomb := []byte{0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x61}
	tests := []struct {
		name   string
		send   []byte
		want   []answer
		closes bool
	}{
		{"length 0xFFFFFFFF", []byte{0xff, 0xff, 0xff, 0xff}, []answer{{wire.KindGoAway, 0, codes.ResourceExhausted}}, true},
		{"length below header", []byte{0, 0, 0, 2, 1, 1}, []answer{{wire.KindGoAway, 0, codes.InvalidArgument}}, true},
		{"unknown kind", wire.AppendFrame(nil, 0x42, 0, 1, nil), []answer{{wire.KindGoAway, 0, codes.InvalidArgument}}, true},
		{"server-only kind", wire.AppendFrame(nil, wire.KindStatus, 0, 1, nil), []answer{{wire.KindGoAway, 0, codes.InvalidArgument}}, true},
		{"snappy bomb", request(1, calculate, wire.FlagCompressed, bomb), []answer{{wire.KindStatus, 1, codes.ResourceExhausted}}, false},
		{"corrupt snappy", request(1, calculate, wire.FlagCompressed, []byte{0x0a, 0xff, 0xff, 0xff}), []answer{{wire.KindStatus, 1, codes.InvalidArgument}}, false},
		{"invalid protobuf", request(1, calculate, 0, []byte{0xff, 0xff, 0xff}), []answer{{wire.KindStatus, 1, codes.InvalidArgument}}, false},
		{"unknown method", request(1, "/calculator.v1.CalculatorService/SquareRoot", 0, nil), []answer{{wire.KindStatus, 1, codes.Unimplemented}}, false},
		{"unbound ref", wire.AppendFrame(nil, wire.KindRequest, 0, 1, []byte{7}), []answer{{wire.KindStatus, 1, codes.InvalidArgument}}, false},
		{"bad header", wire.AppendFrame(nil, wire.KindRequest, wire.FlagMethodName, 1, []byte{1, 99}), []answer{{wire.KindStatus, 1, codes.InvalidArgument}}, false},
		{"zero deadline", wire.AppendFrame(nil, wire.KindRequest, wire.FlagMethodName|wire.FlagDeadline, 1,
			append(append([]byte{1, byte(len(calculate))}, calculate...), 0)), []answer{{wire.KindStatus, 1, codes.DeadlineExceeded}}, false},
		{"stream request with a message", request(1, "/calculator.v1.CalculatorService/CalculateStream", 0, calcMsg), []answer{{wire.KindStatus, 1, codes.InvalidArgument}}, false},
		{"id not increasing", append(request(2, calculate, wire.FlagDeadline, append([]byte{0}, calcMsg...)), request(2, calculate, 0, calcMsg)...),
			[]answer{{wire.KindStatus, 2, codes.DeadlineExceeded}, {wire.KindGoAway, 0, codes.InvalidArgument}}, true},
		{"id zero", request(0, calculate, 0, calcMsg), []answer{{wire.KindGoAway, 0, codes.InvalidArgument}}, true},
		{"ping with an id", wire.AppendFrame(nil, wire.KindPing, 0, 3, nil), []answer{{wire.KindGoAway, 0, codes.InvalidArgument}}, true},
		{"ping", wire.AppendFrame(nil, wire.KindPing, 0, 0, []byte("12345678")), []answer{{wire.KindPong, 0, codes.OK}}, false},
		{"stray cancel and message", append(wire.AppendFrame(nil, wire.KindCancel, 0, 9, nil), append(wire.AppendFrame(nil, wire.KindMessage, 0, 9, nil), request(10, calculate, 0, calcMsg)...)...),
			[]answer{{wire.KindResponse, 10, codes.OK}}, false},
	}
	srv := start(t, tcpserver.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, rd := dial(t, srv.TCPAddr, true)
			if _, err := nc.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			expectFrames(t, rd, tt.want, tt.closes)
			if !tt.closes { // the connection still works
				if _, err := nc.Write(requestRef(100, 9, calculate, 0, calcMsg)); err != nil {
					t.Fatal(err)
				}
				expectFrames(t, rd, []answer{{wire.KindResponse, 100, codes.OK}}, false)
			}
			stillServes(t, srv)
		})
	}
}

func TestBadPreface(t *testing.T) {
	tls := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	srv := start(t, tcpserver.Options{})
	t.Run("http", func(t *testing.T) {
		nc, _ := dial(t, srv.TCPAddr, false)
		_, _ = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
		got, err := io.ReadAll(nc)
		if err != nil || !strings.HasPrefix(string(got), "HTTP/1.1 400 Bad Request\r\n") || !strings.Contains(string(got), "calc's raw TCP protocol") {
			t.Fatalf("got %q, %v", got, err)
		}
		stillServes(t, srv)
	})
	for name, in := range map[string][]byte{"tls hello": tls, "garbage": randomBytes(1024)} {
		t.Run(name, func(t *testing.T) {
			nc, _ := dial(t, srv.TCPAddr, false)
			_, _ = nc.Write(in)
			got, err := io.ReadAll(nc)
			if len(got) != 0 || (err != nil && !isReset(err)) {
				t.Fatalf("got %q, %v; want a silent close", got, err)
			}
			stillServes(t, srv)
		})
	}
	t.Run("version 2", func(t *testing.T) {
		nc, rd := dial(t, srv.TCPAddr, false)
		_, _ = nc.Write([]byte("CALC\x02"))
		expectFrames(t, rd, []answer{{wire.KindGoAway, 0, codes.FailedPrecondition}}, true)
		stillServes(t, srv)
	})
	t.Run("garbage after preface", func(t *testing.T) {
		nc, rd := dial(t, srv.TCPAddr, true)
		_, _ = nc.Write(randomBytes(4096))
		f, err := rd.ReadFrame()
		if err != nil || f.Kind != wire.KindGoAway {
			t.Fatalf("got %v %v, want GOAWAY", f.Kind, err)
		}
		stillServes(t, srv)
	})
	t.Run("truncated frame then close", func(t *testing.T) {
		nc, _ := dial(t, srv.TCPAddr, true)
		frame := request(1, calculate, 0, []byte{8, 1, 16, 2, 24, 3})
		_, _ = nc.Write(frame[:len(frame)-3])
		nc.Close()
		stillServes(t, srv)
	})
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// isReset reports a connection reset, which a close with unread input
// causes: a close, as far as a client is concerned.
func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

func TestSlowClients(t *testing.T) {
	srv := start(t, tcpserver.Options{HandshakeTimeout: 300 * time.Millisecond, FrameTimeout: 300 * time.Millisecond})
	t.Run("slow preface", func(t *testing.T) {
		nc, _ := dial(t, srv.TCPAddr, false)
		_, _ = nc.Write([]byte("CA"))
		got, err := io.ReadAll(nc)
		if len(got) != 0 || err != nil {
			t.Fatalf("got %q %v, want a silent close", got, err)
		}
		stillServes(t, srv)
	})
	t.Run("slowloris", func(t *testing.T) {
		nc, rd := dial(t, srv.TCPAddr, true)
		frame := request(1, calculate, 0, []byte{8, 1, 16, 2, 24, 3})
		go func() { // one byte every 100 ms; stops when the server hangs up
			for _, b := range frame {
				if _, err := nc.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
		expectFrames(t, rd, []answer{{wire.KindGoAway, 0, codes.DeadlineExceeded}}, true)
		stillServes(t, srv)
	})
}

// TestClientThatNeverReads pipelines requests without reading any answer:
// the server must stop reading (backpressure), keep its memory bounded and
// close the connection after its write timeout.
func TestClientThatNeverReads(t *testing.T) {
	srv := start(t, tcpserver.Options{WriteTimeout: 500 * time.Millisecond, MaxConcurrentCalls: 64})
	nc, _ := dial(t, srv.TCPAddr, true)
	// 7^1150 has 972 digits: small requests, large answers.
	msg, _ := proto.Marshal(&calculatorv1.EvaluateRequest{Expression: "7^1150"})
	var batch []byte
	for i := range 1000 {
		p, flags := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 1, MethodName: "/calculator.v1.CalculatorService/Evaluate"})
		batch = wire.AppendFrame(batch, wire.KindRequest, flags, uint32(i+1), append(p, msg...))
	}
	runtime.GC()
	before := heapInUse()
	written, id := 0, uint32(1000)
	var err error
	for written < 64<<20 && err == nil { // at most 64 MiB of requests
		_, err = nc.Write(batch)
		written += len(batch)
		batch = batch[:0]
		for range 1000 {
			id++
			batch = wire.AppendFrame(batch, wire.KindRequest, 0, id, append([]byte{1}, msg...))
		}
	}
	if err == nil {
		t.Fatalf("the server accepted %d bytes from a client that never reads", written)
	}
	grew := heapInUse() - before
	t.Logf("server closed after %d bytes of requests (%v); heap grew %d bytes", written, err, grew)
	if grew > 32<<20 {
		t.Fatalf("heap grew by %d bytes", grew)
	}
	stillServes(t, srv)
}

func heapInUse() int {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int(m.HeapInuse)
}

func TestConnectionFlood(t *testing.T) {
	srv := start(t, tcpserver.Options{MaxConnections: 4})
	var accepted []net.Conn
	refused := 0
	for range 10 {
		nc, rd := dial(t, srv.TCPAddr, false)
		_, _ = nc.Write(wire.AppendPreface(nil))
		f, err := rd.ReadFrame()
		switch {
		case err == nil && f.Kind == wire.KindSettings:
			accepted = append(accepted, nc)
		case err == nil && f.Kind == wire.KindGoAway:
			_, st, _ := wire.ParseGoAway(f.Payload)
			if codes.Code(st.GetCode()) != codes.ResourceExhausted {
				t.Fatalf("refusal with %v", st)
			}
			refused++
		default:
			t.Fatalf("got %v %v", f.Kind, err)
		}
	}
	if len(accepted) != 4 || refused != 6 {
		t.Fatalf("accepted %d, refused %d; want 4 and 6", len(accepted), refused)
	}
	for _, nc := range accepted {
		nc.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for { // the server notices the closes asynchronously
		if time.Now().After(deadline) {
			t.Fatal("server did not free its connection slots")
		}
		c, err := tryCall(srv.TCPAddr)
		if err == nil && c == 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryCall makes one call on a new raw connection.
func tryCall(addr string) (int64, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	_, _ = nc.Write(append(wire.AppendPreface(nil), request(1, calculate, 0, msg)...))
	rd := wire.NewReader(nc, 0)
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return 0, err
		}
		switch f.Kind {
		case wire.KindResponse:
			var resp calculatorv1.CalculateResponse
			err := proto.Unmarshal(f.Payload, &resp)
			return resp.GetResult(), err
		case wire.KindGoAway:
			_, st, _ := wire.ParseGoAway(f.Payload)
			return 0, errors.New(st.GetMessage())
		}
	}
}
