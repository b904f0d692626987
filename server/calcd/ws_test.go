package calcd_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc/codes"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
	"github.com/calcrpc/calc/server/httpserver"
	"github.com/calcrpc/calc/server/wsserver"
)

// dialWS opens a calc.v1 WebSocket to the HTTP port's /ws with the given
// Origin (none if empty).
func dialWS(ctx context.Context, httpAddr, origin string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return websocket.Dial(ctx, "ws://"+httpAddr+"/ws", &websocket.DialOptions{Subprotocols: []string{wsserver.Subprotocol}, HTTPHeader: h})
}

// TestWebSocketAndPage: the HTTP port serves the web page at / and the raw
// TCP protocol at /ws; calls there are counted with transport="ws"; the
// HTTP port's CORS origins may open a WebSocket, others may not; and the
// calcd's drain sends the WebSocket a GOAWAY.
func TestWebSocketAndPage(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{RPCMetrics: true, HTTP: httpserver.Options{CORS: httpserver.CORS{AllowedOrigins: []string{"https://game.example.com"}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	code, page := get(t, srv.HTTPAddr, "/")
	if code != http.StatusOK || !strings.Contains(page, `<script type="module" src="/assets/app.js">`) {
		t.Fatalf("GET /: %d %.200s", code, page)
	}
	if code, _ := get(t, srv.HTTPAddr, "/assets/app.js"); code != http.StatusOK {
		t.Fatalf("GET /assets/app.js: %d", code)
	}
	if code, body := get(t, srv.HTTPAddr, "/nothing-here"); code != http.StatusNotFound || !strings.Contains(body, `"code"`) {
		t.Errorf("GET /nothing-here: %d %s, want the HTTP port's JSON 404", code, body)
	}

	for _, o := range []struct {
		origin string
		ok     bool
	}{{"https://game.example.com", true}, {"http://" + srv.HTTPAddr, true}, {"https://evil.example.com", false}} {
		ws, resp, err := dialWS(ctx, srv.HTTPAddr, o.origin)
		if o.ok != (err == nil) {
			t.Errorf("origin %s: %v %v", o.origin, resp, err)
		}
		if err == nil {
			ws.CloseNow()
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %s: refused with %v, want 403", o.origin, resp)
		}
	}

	ws, _, err := dialWS(ctx, srv.HTTPAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	cc, err := tcpconn.NewConn(ctx, nc, tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := calculatorv1.NewCalculatorServiceClient(cc)
	for i := range int64(3) {
		if r, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: i, Rhs: 1}); err != nil || r.GetResult() != i+1 {
			t.Fatalf("Calculate over /ws: %v %v", r, err)
		}
	}
	labels := map[string]string{"grpc_type": "unary", "grpc_service": "calculator.v1.CalculatorService", "grpc_method": "Calculate", "grpc_code": "OK", "transport": "ws"}
	if got := value(scrape(t, srv.AdminAddr), "grpc_server_handled_total", labels); got != 3 {
		t.Errorf("grpc_server_handled_total{transport=ws} = %v, want 3", got)
	}

	// The drain: a raw stream on a second WebSocket sees GOAWAY with code
	// OK, then the end.
	ws2, _, err := dialWS(ctx, srv.HTTPAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.CloseNow()
	nc2 := websocket.NetConn(context.Background(), ws2, websocket.MessageBinary)
	if _, err := nc2.Write(wire.AppendPreface(nil)); err != nil {
		t.Fatal(err)
	}
	rd := wire.NewReader(nc2, 0)
	if f, err := rd.ReadFrame(); err != nil || f.Kind != wire.KindSettings {
		t.Fatalf("first frame %v %v", f.Kind, err)
	}
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	f, err := rd.ReadFrame()
	if err != nil || f.Kind != wire.KindGoAway {
		t.Fatalf("during the drain: %v %v, want GOAWAY", f.Kind, err)
	}
	if _, st, err := wire.ParseGoAway(f.Payload); err != nil || codes.Code(st.GetCode()) != codes.OK {
		t.Fatalf("GOAWAY %v %v, want code OK", st, err)
	}
	if _, err := rd.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the GOAWAY: %v, want the end of the stream (a close with 1000)", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
