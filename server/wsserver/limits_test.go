package wsserver_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/auth"
	"github.com/calcrpc/calc/server/tcpserver"
	"github.com/calcrpc/calc/server/wsserver"
)

// closeStatus reads ws until it ends and returns the status of its close.
func closeStatus(ctx context.Context, ws *websocket.Conn) websocket.StatusCode {
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// TestMessageTooBig: a message over the max frame size plus 4 bytes closes
// the WebSocket with 1009, whatever frames it holds.
func TestMessageTooBig(t *testing.T) {
	f := start(t, wsserver.Options{TCP: tcpserver.Options{MaxFrameSize: 1024}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, f.URL, nil, wsserver.Subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ping := wire.AppendFrame(nil, wire.KindPing, 0, 0, []byte("12345678"))
	// 1028 bytes of PINGs in one message are allowed; 1029 are not.
	ok := wire.AppendPreface(nil)
	for len(ok)+len(ping) <= 1028 {
		ok = append(ok, ping...)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, ok); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 0, 1029+len(ping))
	for len(big) < 1029 {
		big = append(big, ping...)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	if got := closeStatus(ctx, ws); got != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v, want %v", got, websocket.StatusMessageTooBig)
	}
}

// TestTextMessage: calc.v1 carries binary messages; a text message closes
// the WebSocket with 1003.
func TestTextMessage(t *testing.T) {
	f := start(t, wsserver.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, f.URL, nil, wsserver.Subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte("CALC\x01")); err != nil {
		t.Fatal(err)
	}
	if got := closeStatus(ctx, ws); got != websocket.StatusUnsupportedData {
		t.Fatalf("close status %v, want %v", got, websocket.StatusUnsupportedData)
	}
}

// TestConnectionLimits: the per-address and server-wide connection limits
// hold for WebSockets as for raw TCP connections: the one past them is
// refused with GOAWAY RESOURCE_EXHAUSTED, which the Go client reports.
func TestConnectionLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts tcpserver.Options
		msg  string
	}{
		{"per address", tcpserver.Options{MaxConnectionsPerAddr: 2}, "too many connections from this address"},
		{"server-wide", tcpserver.Options{MaxConnections: 2}, "too many connections"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, wsserver.Options{TCP: tc.opts})
			for range 2 {
				if _, err := f.client(t, tcpconn.Options{}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := f.client(t, tcpconn.Options{})
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("third connection: %v, want RESOURCE_EXHAUSTED %q", err, tc.msg)
			}
			if got := f.WS.Stats().ConnectionsOpen; got != 2 {
				// The refused one may still be closing: wait for it.
				deadline := time.Now().Add(5 * time.Second)
				for f.WS.Stats().ConnectionsOpen != 2 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if got := f.WS.Stats().ConnectionsOpen; got != 2 {
					t.Fatalf("%d connections open, want 2", got)
				}
			}
		})
	}
}

// TestDrain: Shutdown sends GOAWAY (code OK) on a WebSocket; its open
// stream goes on to its end, new calls are refused, then the WebSocket is
// closed with 1000 and Shutdown returns nil. An upgrade during the drain
// is refused with 503.
func TestDrain(t *testing.T) {
	f := start(t, wsserver.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, f.URL, nil, wsserver.Subprotocol)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	nc := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	rd := wire.NewReader(nc, 0)
	hdr, hflags := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 1, MethodName: "/calculator.v1.CalculatorService/CalculateStream"})
	msg := func(id uint64) []byte {
		b, _ := proto.Marshal(&calculatorv1.CalculateStreamRequest{Id: id, Calculation: add(int64(id), 1)})
		return wire.AppendFrame(nil, wire.KindMessage, 0, 1, b)
	}
	out := wire.AppendPreface(nil)
	out = wire.AppendFrame(out, wire.KindRequest, hflags, 1, hdr)
	out = append(out, msg(1)...)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	expect := func(kind wire.Kind) wire.Frame {
		t.Helper()
		fr, err := rd.ReadFrame()
		if err != nil || fr.Kind != kind {
			t.Fatalf("frame %v %v, want %v", fr.Kind, err, kind)
		}
		return fr
	}
	expect(wire.KindSettings)
	expect(wire.KindMessage)

	shut := make(chan error, 1)
	go func() { shut <- f.WS.Shutdown(ctx) }()
	fr := expect(wire.KindGoAway)
	last, st, err := wire.ParseGoAway(fr.Payload)
	if err != nil || last != 1 || st.GetCode() != int32(codes.OK) {
		t.Fatalf("GOAWAY last %d %v %v, want last 1 and OK", last, st, err)
	}
	_, resp, err := dialWS(ctx, f.URL, nil, wsserver.Subprotocol)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("an upgrade during the drain: %v %v, want 503", resp, err)
	}
	// The stream goes on, and a new call (id 2) is never answered: the
	// GOAWAY said the last accepted id was 1.
	unary, _ := proto.Marshal(add(1, 1))
	uhdr, uflags := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 2, MethodName: "/calculator.v1.CalculatorService/Calculate"})
	out = wire.AppendFrame(nil, wire.KindRequest, uflags, 2, append(uhdr, unary...))
	out = append(out, msg(2)...)
	out = wire.AppendFrame(out, wire.KindHalfClose, 0, 1, nil)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	fr = expect(wire.KindMessage)
	var r calculatorv1.CalculateStreamResponse
	if err := proto.Unmarshal(fr.Payload, &r); err != nil || r.GetId() != 2 || r.GetResult() != 3 {
		t.Fatalf("the stream's answer after GOAWAY: %v %v", &r, err)
	}
	fr = expect(wire.KindStatus)
	if fr.ID != 1 || len(fr.Payload) != 0 {
		t.Fatalf("STATUS for call %d, %d bytes; want call 1 OK", fr.ID, len(fr.Payload))
	}
	if _, err := rd.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last answer: %v, want the end of the stream (close 1000)", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestDrainDeadline: a stream still open when Shutdown's context ends is
// answered UNAVAILABLE, and Shutdown reports the context's error.
func TestDrainDeadline(t *testing.T) {
	f := start(t, wsserver.Options{})
	cc, err := f.client(t, tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := calculatorv1.NewCalculatorServiceClient(cc).CalculateStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: 1, Calculation: add(1, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	if err := f.WS.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the context's deadline", err)
	}
	_, err = s.Recv()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "drain deadline reached") {
		t.Fatalf("the stream after the drain deadline: %v, want UNAVAILABLE (drain deadline reached)", err)
	}
}

// TestIdleTimeout: a WebSocket with nothing in flight that sends nothing
// for the idle timeout gets GOAWAY "idle timeout" and is closed with 1000.
func TestIdleTimeout(t *testing.T) {
	f := start(t, wsserver.Options{TCP: tcpserver.Options{IdleTimeout: 300 * time.Millisecond}})
	nc := f.stream(t)
	if _, err := nc.Write(wire.AppendPreface(nil)); err != nil {
		t.Fatal(err)
	}
	got := exchange(t, nc, nil, 0)
	if len(got) != 2 || got[0] != "SETTINGS" || got[1] != "GOAWAY last=0 OK: idle timeout" {
		t.Fatalf("frames %q, want SETTINGS then GOAWAY OK idle timeout", got)
	}
}

// TestTokens: a bearer token rides in each call's request metadata, as on
// raw TCP (a browser cannot set headers on a WebSocket): a call without
// one is UNAUTHENTICATED, one with a token calls what its principal may
// and gets PERMISSION_DENIED for the rest.
func TestTokens(t *testing.T) {
	sum := sha256.Sum256([]byte("tok-ws"))
	path := filepath.Join(t.TempDir(), "auth.json")
	policy := `{"principals": [{"name": "ws", "token_sha256": "` + hex.EncodeToString(sum[:]) +
		`", "methods": ["/calculator.v1.CalculatorService/Calculate", "/calculator.v1.CalculatorService/CalculateStream"]}]}`
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, wsserver.Options{TCP: tcpserver.Options{
		UnaryInterceptors:  []grpc.UnaryServerInterceptor{a.UnaryInterceptor()},
		StreamInterceptors: []grpc.StreamServerInterceptor{a.StreamInterceptor()},
	}})
	cc, err := f.client(t, tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client := calculatorv1.NewCalculatorServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	withToken := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok-ws")
	if _, err := client.Calculate(ctx, add(2, 3)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v, want UNAUTHENTICATED", err)
	}
	if r, err := client.Calculate(withToken, add(2, 3)); err != nil || r.GetResult() != 5 {
		t.Errorf("with the token: %v %v", r, err)
	}
	if _, err := client.Evaluate(withToken, &calculatorv1.EvaluateRequest{Expression: "1"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a method the principal may not call: %v, want PERMISSION_DENIED", err)
	}
	s, err := client.CalculateStream(withToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&calculatorv1.CalculateStreamRequest{Id: 9, Calculation: add(4, 5)}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || r.GetResult() != 9 {
		t.Errorf("a stream with the token: %v %v", r, err)
	}
	_ = s.CloseSend()
}
