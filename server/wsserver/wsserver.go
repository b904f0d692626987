// Package wsserver serves calc's raw TCP protocol over WebSocket, for
// browsers (PROTOCOL.md, WebSocket): an http.Handler to mount on the HTTP
// port at /ws. A WebSocket opened with the subprotocol calc.v1 carries the
// raw TCP byte stream unchanged, preface and frames, in binary messages
// whose boundaries mean nothing: a frame may span messages and a message
// may hold several frames.
//
// Each accepted WebSocket becomes a net.Conn (conn.go) that a
// tcpserver.Server of the package's own serves through
// tcpserver.Server.ServeConn: the very connection code of the raw TCP port,
// so its limits (connections in all and per address, handshake, frames,
// streams, messages), timeouts, interceptors (auth, metrics, access log,
// recovery) and drain (GOAWAY, then the calls in flight finish) are the raw
// TCP port's, counted apart from it. Register services on a Server as on
// the other endpoints.
//
// Before the upgrade the handler refuses, in HTTP: a request that does not
// ask for the subprotocol calc.v1 (400), and one whose Origin is neither
// the page's own nor one of Options.AllowedOrigins (403). A WebSocket
// message may hold at most the max frame size plus 4 bytes (one largest
// frame with its length prefix); a larger one closes the WebSocket with
// status 1009, a text message with 1003.
package wsserver

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// Subprotocol is the WebSocket subprotocol of calc's raw TCP protocol,
// version 1. A client must ask for it (Sec-WebSocket-Protocol).
const Subprotocol = "calc.v1"

// Options configures a Server. The zero value means the documented
// defaults.
type Options struct {
	// TCP configures the connection engine that serves every WebSocket:
	// its limits, timeouts, interceptors, logger and inline methods, as
	// for the raw TCP port (tcpserver.Options, whose zero fields mean
	// tcpserver's defaults). Its TLSConfig is ignored: the HTTP server in
	// front terminates TLS (wss://).
	TCP tcpserver.Options
	// AllowedOrigins are the origins, as browsers send them in the Origin
	// header (scheme://host[:port], such as "https://game.example.com"),
	// whose pages may open a WebSocket besides the page's own origin (the
	// request's host); "*" allows every origin. Matching is exact and
	// case-insensitive, as httpserver.CORS.AllowedOrigins: pass the same
	// list. A request without an Origin header (not from a browser) is
	// always allowed. The zero value allows the same origin only.
	AllowedOrigins []string
}

// Server serves calc's raw TCP protocol over WebSockets. It is an
// http.Handler and a grpc.ServiceRegistrar.
type Server struct {
	tcp       *tcpserver.Server
	origins   []string
	anyOrigin bool
	readLimit int64

	refused [len(refusalReasons)]atomic.Uint64 // upgrades refused, by refusalReasons

	mu        sync.Mutex
	conns     map[*conn]struct{} // until their pump and close handshake have ended
	closed    bool
	connsGone chan struct{} // closed when conns empties after Shutdown began
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	topts := opts.TCP
	topts.TLSConfig = nil
	maxFrame := topts.MaxFrameSize
	if maxFrame == 0 {
		maxFrame = wire.DefaultMaxFrameSize
	}
	return &Server{
		tcp:       tcpserver.New(topts),
		origins:   opts.AllowedOrigins,
		anyOrigin: slices.Contains(opts.AllowedOrigins, "*"),
		readLimit: int64(maxFrame) + 4,
		conns:     map[*conn]struct{}{},
	}
}

// RegisterService registers a service and its implementation, as
// grpc.Server.RegisterService does. Call it before serving.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) { s.tcp.RegisterService(desc, impl) }

// GetServiceInfo returns the registered services and their methods (server
// reflection lists them).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo { return s.tcp.GetServiceInfo() }

// Stats returns the connection engine's figures, as tcpserver.Server.Stats
// does for the raw TCP port (BytesReceived and BytesSent count the
// protocol's bytes, inside the WebSocket messages). ConnectionsRefused
// also counts the requests to the endpoint refused before the upgrade, by
// reason: "draining" (during Shutdown), "origin" (an origin not allowed),
// "subprotocol" (an upgrade without calc.v1) and "not_websocket" (no
// WebSocket handshake, or a bad one).
func (s *Server) Stats() tcpserver.Stats {
	st := s.tcp.Stats()
	for i, reason := range refusalReasons {
		if n := s.refused[i].Load(); n > 0 {
			if st.ConnectionsRefused == nil {
				st.ConnectionsRefused = map[string]uint64{}
			}
			st.ConnectionsRefused[reason] += n
		}
	}
	return st
}

// The reasons an upgrade is refused, indexes into Server.refused.
const (
	refusedDraining = iota
	refusedOrigin
	refusedSubprotocol
	refusedNotWebSocket
)

var refusalReasons = [...]string{"draining", "origin", "subprotocol", "not_websocket"}

// ServeHTTP upgrades a request to a WebSocket with the subprotocol calc.v1
// and serves the raw TCP protocol on it; the handler returns once the
// connection engine has taken it over. Other requests are refused in HTTP:
// without the subprotocol 400, from an origin not allowed 403, not a
// WebSocket handshake 426, during Shutdown 503.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.refused[refusedDraining].Add(1)
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	if !s.originAllowed(r) {
		s.refused[refusedOrigin].Add(1)
		http.Error(w, "wsserver: origin "+r.Header.Get("Origin")+" may not open a WebSocket here", http.StatusForbidden)
		return
	}
	if isUpgrade(r) && !offers(r, Subprotocol) {
		s.refused[refusedSubprotocol].Add(1)
		http.Error(w, "wsserver: this endpoint speaks calc's raw TCP protocol (PROTOCOL.md) over the WebSocket subprotocol "+
			Subprotocol+": ask for it in Sec-WebSocket-Protocol", http.StatusBadRequest)
		return
	}
	hw := &hijackRecorder{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		Subprotocols:       []string{Subprotocol},
		InsecureSkipVerify: true, // the origin was checked above, with our rules
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		s.refused[refusedNotWebSocket].Add(1)
		return // Accept answered: 426 for a request that is no WebSocket handshake
	}
	ws.SetReadLimit(s.readLimit)
	c := newConn(s, ws, hw.conn)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	var authInfo credentials.AuthInfo
	if r.TLS != nil {
		// Handlers see the TLS state as on the gRPC and HTTP endpoints: a
		// verified client certificate can be a principal.
		authInfo = credentials.TLSInfo{State: *r.TLS, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	}
	_ = s.tcp.ServeConn(c, authInfo) // after Shutdown it closes c
}

// forget drops a connection that has ended for good.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.connsGone != nil {
		close(s.connsGone)
		s.connsGone = nil
	}
}

// Shutdown drains the WebSockets as the raw TCP port drains its
// connections (tcpserver.Server.Shutdown): no new upgrade is accepted
// (503), every connection gets GOAWAY, calls in flight and streams may
// finish, and each connection closes, with the WebSocket close handshake,
// after its last answer. When ctx ends first, what is left is ended with
// UNAVAILABLE, then the connections' sockets are closed, and Shutdown
// returns ctx's error (or the connection engine's).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.tcp.Shutdown(ctx)
	s.mu.Lock()
	var gone chan struct{}
	if len(s.conns) > 0 {
		gone = make(chan struct{})
		s.connsGone = gone
	}
	s.mu.Unlock()
	if gone == nil {
		return err
	}
	select {
	case <-gone:
		return err
	case <-ctx.Done():
	}
	// Close handshakes still waiting for their clients: cut them.
	s.mu.Lock()
	for c := range s.conns {
		_ = c.raw.Close()
	}
	s.mu.Unlock()
	select {
	case <-gone:
	case <-time.After(time.Second):
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// originAllowed reports whether r's Origin may open a WebSocket: none (not
// a browser), the request's own host, or one of Options.AllowedOrigins.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || s.anyOrigin {
		return true
	}
	if u, err := url.Parse(origin); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return slices.ContainsFunc(s.origins, func(o string) bool { return strings.EqualFold(o, origin) })
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return headerHas(r, "Upgrade", "websocket") && headerHas(r, "Connection", "upgrade")
}

// offers reports whether r asks for the subprotocol p.
func offers(r *http.Request, p string) bool { return headerHas(r, "Sec-WebSocket-Protocol", p) }

// headerHas reports whether r's header key lists token, comma-separated,
// case-insensitively.
func headerHas(r *http.Request, key, token string) bool {
	for _, v := range r.Header.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// hijackRecorder is the ResponseWriter that websocket.Accept hijacks: it
// keeps the connection, whose addresses the served conn reports and which
// Shutdown can close at once.
type hijackRecorder struct {
	http.ResponseWriter
	conn net.Conn
}

// Hijack takes the connection over, through the ResponseWriter's own
// Hijack (http.ResponseController: wrappers that Unwrap are followed).
func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = nc
	return nc, brw, nil
}

// Unwrap returns the ResponseWriter underneath, for http.ResponseController.
func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }
