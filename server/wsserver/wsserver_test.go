package wsserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/tcpserver"
	"github.com/calcrpc/calc/server/wsserver"
)

// fixture is a wsserver of the calculator behind an HTTP test server on
// loopback, at /ws.
type fixture struct {
	WS  *wsserver.Server
	URL string // ws://127.0.0.1:PORT/ws
}

// start serves the calculator (its cheap methods inline, as calcd runs
// them) over WebSocket with opts; when the test ends it shuts the server
// down and checks that no goroutine leaked.
func start(t *testing.T, opts wsserver.Options) *fixture {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) }) // registered first, so it runs last
	if opts.TCP.Logger == nil {
		opts.TCP.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.TCP.InlineMethods = calculator.CheapMethods
	srv := wsserver.New(opts)
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
	})
	return &fixture{WS: srv, URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
}

// dialWS opens a WebSocket with the given subprotocols and header.
func dialWS(ctx context.Context, url string, header http.Header, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	return websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: subprotocols, HTTPHeader: header})
}

// stream opens a calc.v1 WebSocket as a byte stream, closed when the test
// ends.
func (f *fixture) stream(t *testing.T) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, f.URL, nil, wsserver.Subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Subprotocol() != wsserver.Subprotocol {
		t.Fatalf("subprotocol %q, want %q", ws.Subprotocol(), wsserver.Subprotocol)
	}
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { nc.Close() })
	return nc
}

// client opens a Go raw TCP client (tcpconn) over a calc.v1 WebSocket,
// closed when the test ends.
func (f *fixture) client(t *testing.T, opts tcpconn.Options) (*tcpconn.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, f.URL, nil, wsserver.Subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	c, err := tcpconn.NewConn(ctx, nc, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

func add(a, b int64) *calculatorv1.CalculateRequest {
	return &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: a, Rhs: b}
}

// TestCalls: the generated Go client over a WebSocket runs unary calls,
// gets an error with its details, and pipelines a CalculateStream.
func TestCalls(t *testing.T) {
	f := start(t, wsserver.Options{})
	cc, err := f.client(t, tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client := calculatorv1.NewCalculatorServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if r, err := client.Calculate(ctx, add(2, 3)); err != nil || r.GetResult() != 5 {
		t.Fatalf("Calculate: %v %v", r, err)
	}
	if r, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "2 * (3 + 4) - 10 / 4"}); err != nil || r.GetResult() != "11.5" {
		t.Fatalf("Evaluate: %v %v", r, err)
	}
	_, err = client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: "2 * (3"})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "offset 4") || len(st.Details()) != 2 {
		t.Fatalf("Evaluate(2 * (3): %v, details %v; want INVALID_ARGUMENT at offset 4 with BadRequest and ErrorInfo", err, st.Details())
	}
	if _, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_DIVIDE, Lhs: 1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("1 / 0: %v, want INVALID_ARGUMENT", err)
	}

	// A stream of 2000 calculations, all sent before any answer is read:
	// the answers come back in order, each with its id.
	s, err := client.CalculateStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	sent := make(chan error, 1)
	go func() {
		for i := range int64(n) {
			if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: add(i, i)}); err != nil {
				sent <- err
				return
			}
		}
		sent <- s.CloseSend()
	}()
	for i := range int64(n) {
		r, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if r.GetId() != uint64(i) || r.GetResult() != 2*i {
			t.Fatalf("answer %d: %v", i, r)
		}
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v, want io.EOF", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// TestLargeMessages: messages over the pump's 16 KiB chunks and over the
// compression threshold, both ways, arrive whole.
func TestLargeMessages(t *testing.T) {
	f := start(t, wsserver.Options{})
	cc, err := f.client(t, tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client := calculatorv1.NewCalculatorServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	expr := strings.Repeat("1 + ", 1000) + "1" // 4001 bytes, under the 4096-byte limit
	r, err := client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: expr})
	if err != nil || r.GetResult() != "1001" {
		t.Fatalf("Evaluate of a long expression: %v %v", r, err)
	}
	// Over the expression limit: refused with RESOURCE_EXHAUSTED, as on
	// every transport.
	_, err = client.Evaluate(ctx, &calculatorv1.EvaluateRequest{Expression: strings.Repeat("1+", 40000) + "1"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("an 80 KB expression: %v, want RESOURCE_EXHAUSTED", err)
	}
}

// TestFramesSpanMessages: the messages are a byte stream: a frame split
// over several messages, and several frames in one message, are served.
func TestFramesSpanMessages(t *testing.T) {
	f := start(t, wsserver.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, f.URL, nil, wsserver.Subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	msg, _ := proto.Marshal(add(20, 22))
	var out []byte
	out = wire.AppendPreface(out)
	hdr, hflags := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 1, MethodName: "/calculator.v1.CalculatorService/Calculate"})
	out = wire.AppendFrame(out, wire.KindRequest, hflags, 1, append(hdr, msg...))
	// The preface and call 1, one byte per message.
	for i := range out {
		if err := ws.Write(ctx, websocket.MessageBinary, out[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	// Calls 2 and 3 in one message, with call 4's first half; then the rest.
	hdr, hflags = wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 1})
	var more []byte
	for id := uint32(2); id <= 4; id++ {
		more = wire.AppendFrame(more, wire.KindRequest, hflags, id, append(hdr, msg...))
	}
	cut := len(more) - 7
	if err := ws.Write(ctx, websocket.MessageBinary, more[:cut]); err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, more[cut:]); err != nil {
		t.Fatal(err)
	}
	nc := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	rd := wire.NewReader(nc, 0)
	if fr, err := rd.ReadFrame(); err != nil || fr.Kind != wire.KindSettings {
		t.Fatalf("first frame: %v %v, want SETTINGS", fr.Kind, err)
	}
	got := map[uint32]int64{}
	for len(got) < 4 {
		fr, err := rd.ReadFrame()
		if err != nil || fr.Kind != wire.KindResponse {
			t.Fatalf("frame %v %v, want RESPONSE", fr.Kind, err)
		}
		var resp calculatorv1.CalculateResponse
		if err := proto.Unmarshal(fr.Payload, &resp); err != nil {
			t.Fatal(err)
		}
		got[fr.ID] = resp.GetResult()
	}
	for id := uint32(1); id <= 4; id++ {
		if got[id] != 42 {
			t.Errorf("call %d answered %d, want 42", id, got[id])
		}
	}
}

// TestRefusedUpgrades: a request that does not ask for calc.v1, one from an
// origin not allowed and one that is no WebSocket handshake are refused in
// HTTP; the page's own origin, an allowed one and a client without an
// Origin are let in.
func TestRefusedUpgrades(t *testing.T) {
	f := start(t, wsserver.Options{AllowedOrigins: []string{"https://game.example.com"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	host := strings.TrimPrefix(strings.TrimSuffix(f.URL, "/ws"), "ws://")
	origin := func(o string) http.Header { return http.Header{"Origin": {o}} }
	for _, tc := range []struct {
		name         string
		header       http.Header
		subprotocols []string
		want         int    // HTTP status of a refusal; 0: accepted
		reason       string // the Stats.ConnectionsRefused reason it counts under
	}{
		{"no subprotocol", nil, nil, http.StatusBadRequest, "subprotocol"},
		{"another subprotocol", nil, []string{"chat"}, http.StatusBadRequest, "subprotocol"},
		{"calc.v1 among others", nil, []string{"chat", "calc.v1"}, 0, ""},
		{"origin not allowed", origin("https://evil.example.com"), []string{"calc.v1"}, http.StatusForbidden, "origin"},
		{"origin of another port", origin("http://127.0.0.1:1"), []string{"calc.v1"}, http.StatusForbidden, "origin"},
		{"same origin", origin("http://" + host), []string{"calc.v1"}, 0, ""},
		{"allowed origin", origin("https://GAME.example.com"), []string{"calc.v1"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.WS.Stats().ConnectionsRefused
			defer func() {
				after := f.WS.Stats().ConnectionsRefused
				for _, r := range []string{"subprotocol", "origin", "not_websocket", "draining"} {
					want := before[r]
					if r == tc.reason {
						want++
					}
					if after[r] != want {
						t.Errorf("ConnectionsRefused[%q] = %d, want %d", r, after[r], want)
					}
				}
			}()
			ws, resp, err := dialWS(ctx, f.URL, tc.header, tc.subprotocols...)
			if tc.want == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if ws.Subprotocol() != wsserver.Subprotocol {
					t.Errorf("subprotocol %q", ws.Subprotocol())
				}
				ws.Close(websocket.StatusNormalClosure, "")
				return
			}
			if err == nil {
				ws.CloseNow()
				t.Fatalf("accepted, want HTTP %d", tc.want)
			}
			if resp == nil || resp.StatusCode != tc.want {
				t.Fatalf("%v (response %v), want HTTP %d", err, resp, tc.want)
			}
		})
	}
	// A plain GET: 426, from websocket.Accept.
	resp, err := http.Get("http://" + host + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("plain GET: %d, want 426", resp.StatusCode)
	}
	if n := f.WS.Stats().ConnectionsRefused["not_websocket"]; n != 1 {
		t.Errorf("ConnectionsRefused[not_websocket] = %d after a plain GET, want 1", n)
	}
}

// TestSameRefusalsAsRawTCP: bytes a client may send wrongly get the very
// answer over a WebSocket that they get from the raw TCP port: the same
// frames (kind, id, status code and message), then the end of the
// connection.
func TestSameRefusalsAsRawTCP(t *testing.T) {
	f := start(t, wsserver.Options{})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tcp := tcpserver.New(tcpserver.Options{Logger: logger, InlineMethods: calculator.CheapMethods})
	calculatorv1.RegisterCalculatorServiceServer(tcp, calculator.New())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- tcp.Serve(lis) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tcp.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		<-served
	}()

	pre := func(b ...byte) []byte { return append(wire.AppendPreface(nil), b...) } // a fresh array each time
	msg, _ := proto.Marshal(add(2, 3))
	hdr, hflags := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 1, MethodName: "/calculator.v1.CalculatorService/Calculate"})
	call := wire.AppendFrame(nil, wire.KindRequest, hflags, 1, append(hdr, msg...))
	unknown := wire.AppendFrame(pre(), wire.KindRequest, wire.FlagMethodName, 1, append([]byte{1, 4}, "/x/y"...))
	for _, tc := range []struct {
		name   string
		in     []byte
		frames int // a connection kept open: how many frames to read; 0: until it closes
		want   string
	}{
		{"frame over the max frame size", pre(0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0, 0, 0, 0, 1), 0, "GOAWAY last=0 ResourceExhausted: wire: frame length exceeds the max frame size"},
		{"frame length under 6", pre(0, 0, 0, 2, 0x08, 0), 0, "GOAWAY last=0 InvalidArgument"},
		{"unknown frame kind", wire.AppendFrame(pre(), 0x42, 0, 0, nil), 0, "GOAWAY last=0 InvalidArgument"},
		{"a frame only the server sends", wire.AppendFrame(pre(), wire.KindSettings, 0, 0, nil), 0, "GOAWAY last=0 InvalidArgument"},
		{"a call, then a call id not above it", wire.AppendFrame(pre(call...), wire.KindRequest, 0, 1, []byte{1}), 0, "GOAWAY last=1 InvalidArgument"},
		{"unsupported version", []byte{'C', 'A', 'L', 'C', 9}, 0, "GOAWAY last=0 FailedPrecondition"},
		{"a PING with a call id", wire.AppendFrame(pre(), wire.KindPing, 0, 7, []byte("12345678")), 0, "GOAWAY last=0 InvalidArgument"},
		{"unknown method, then a ping", wire.AppendFrame(unknown, wire.KindPing, 0, 0, []byte("12345678")), 3, "PONG id=0 12345678"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			want := exchange(t, nc, tc.in, tc.frames)
			got := exchange(t, f.stream(t), tc.in, tc.frames)
			if len(want) == 0 || !strings.HasPrefix(want[len(want)-1], tc.want) {
				t.Fatalf("the raw TCP port answered %q, want it to end with %q", want, tc.want)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("over WebSocket:\n%s\nover raw TCP:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// exchange writes in to nc and returns the frames the server answers, as
// text: n of them, or with n 0 every one until it closes the connection.
func exchange(t *testing.T, nc net.Conn, in []byte, n int) []string {
	t.Helper()
	if _, err := nc.Write(in); err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(nc, 0)
	var out []string
	for n == 0 || len(out) < n {
		fr, err := rd.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrTruncated) {
				t.Fatalf("after %v: %v", out, err)
			}
			return out
		}
		line := fr.Kind.String()
		switch fr.Kind {
		case wire.KindGoAway:
			last, st, err := wire.ParseGoAway(fr.Payload)
			if err != nil {
				t.Fatal(err)
			}
			line += " last=" + itoa(int64(last)) + " " + codes.Code(st.GetCode()).String() + ": " + st.GetMessage()
		case wire.KindStatus:
			st, err := wire.ParseStatus(fr.Payload)
			if err != nil {
				t.Fatal(err)
			}
			line += " id=" + itoa(int64(fr.ID)) + " " + codes.Code(st.GetCode()).String() + ": " + st.GetMessage()
		case wire.KindPong, wire.KindResponse:
			line += " id=" + itoa(int64(fr.ID)) + " " + string(fr.Payload)
		}
		out = append(out, line)
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
