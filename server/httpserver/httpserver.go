// Package httpserver is calc's HTTP endpoint: one port that serves, over
// HTTP/1.1 and HTTP/2 (with prior knowledge, h2c, in plaintext; chosen by
// ALPN over TLS), the Connect protocol (JSON and binary), gRPC-Web, gRPC
// and the REST mapping that the schema declares with google.api.http
// options, for every service registered on it.
//
// connectrpc.com/vanguard transcodes each call into gRPC and hands it to a
// grpc.Server of the endpoint's own (a grpcserver.Server, reached through
// grpc.Server.ServeHTTP), configured like the gRPC endpoint: the same
// interceptors (metrics, access log, recovery, auth), message size limit
// and stream budget. So a call answers the same codes, messages and
// details whichever door it came in by. A REST error is the JSON of its
// google.rpc.Status ({"code": 3, "message": ..., "details": [...]}) with
// the HTTP status that goes with its code.
//
// The endpoint routes with an http.ServeMux: the transcoder is mounted at
// each registered service's path (/calculator.v1.CalculatorService/) and at
// the first segment of each REST path (/v1/). Handle adds other handlers
// (a WebSocket endpoint, a web page at "/"); a path nobody handles is a
// 404 with a JSON google.rpc.Status, code UNIMPLEMENTED.
//
// Limits, with the other transports' defaults: connections in all and per
// address (closed on accept), HTTP/2 streams per connection, the request
// message size (per message: a unary request, or each message of a stream),
// the time to read a request's headers (and TLS handshake) and a unary
// request's body, the idle time of a kept-alive connection, HTTP/2
// keepalive pings and the time a blocked HTTP/2 write may take. CORS is off
// unless Options.CORS names origins.
//
// Around vanguard (v0.4.0) the endpoint mends what would otherwise differ
// from the other transports: a request body that does not decode (JSON or
// binary) and a REST query naming no field are INVALID_ARGUMENT, not
// UNKNOWN; a Connect unary POST without the optional
// Connect-Protocol-Version header is Connect, not a REST 404; a binary
// Connect message over the size limit is RESOURCE_EXHAUSTED, not
// UNAVAILABLE; a compressed request (gzip, or snappy as the gRPC port
// takes it) may not decompress past the message limit, which vanguard's
// own gzip reader does not bound. gRPC's own answers pass through
// unchanged: a binary message that does not decode is INTERNAL there, as
// on the gRPC port.
package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/vanguard"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/calcrpc/calc/internal/grpcsnappy"
	"github.com/calcrpc/calc/server/endpoint"
	"github.com/calcrpc/calc/server/grpcserver"
)

// ErrServerClosed is returned by Serve after Shutdown. It is
// endpoint.ErrServerClosed, the one every calc endpoint returns.
var ErrServerClosed = endpoint.ErrServerClosed

// Defaults for the zero Options. The limits are the gRPC endpoint's, the
// timeouts the raw TCP endpoint's (tcpserver: handshake, frame, idle and
// write timeouts) and gRPC's keepalive.
const (
	DefaultMaxConnections        = 10000
	DefaultMaxConnectionsPerAddr = 1024
	DefaultMaxConcurrentStreams  = 100
	DefaultMaxHeaderBytes        = 64 << 10
	DefaultHeaderTimeout         = 10 * time.Second
	DefaultBodyTimeout           = 10 * time.Second
	DefaultIdleTimeout           = 5 * time.Minute
	DefaultWriteTimeout          = 10 * time.Second
	DefaultKeepaliveTime         = 2 * time.Minute
	DefaultKeepaliveTimeout      = 20 * time.Second
	DefaultCORSMaxAge            = 2 * time.Hour
)

// Options configures a Server. The zero value means the documented
// defaults.
type Options struct {
	// GRPC configures the grpc.Server that the transcoded calls run on:
	// its Logger (which the HTTP server's own errors go to as well),
	// interceptors, access log, MaxRecvMsgSize (the largest request
	// message over any protocol, 4 MiB by default) and MaxStreams apply.
	// Its connection, keepalive and TLS fields do not: the fields below
	// take their place.
	GRPC grpcserver.Options
	// TLSConfig, when set, serves HTTPS with a clone of it requiring TLS
	// 1.3 and offering ALPN "h2" and "http/1.1"; the handshake is part of
	// HeaderTimeout. nil serves plaintext HTTP/1.1 and HTTP/2 with prior
	// knowledge (h2c), as gRPC clients and buf curl
	// --http2-prior-knowledge speak it.
	TLSConfig *tls.Config
	// CORS lets pages from other origins call the services from a
	// browser; the zero value lets none.
	CORS CORS
	// MaxConnections caps the connections open on the endpoint; one past
	// it is closed as soon as it is accepted. 0 means
	// DefaultMaxConnections.
	MaxConnections int
	// MaxConnectionsPerAddr caps the connections from one IP address,
	// closed in the same way. 0 means DefaultMaxConnectionsPerAddr.
	MaxConnectionsPerAddr int
	// MaxConcurrentStreams caps the requests open on one HTTP/2
	// connection, announced in its SETTINGS; 0 means
	// DefaultMaxConcurrentStreams.
	MaxConcurrentStreams int
	// MaxHeaderBytes caps a request's header (HTTP/1.1: the request line
	// and header, to which net/http adds 4096 bytes of slack; HTTP/2:
	// SETTINGS_MAX_HEADER_LIST_SIZE); a larger one is refused with 431.
	// 0 means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// HeaderTimeout bounds the wait for a request's header, and for a new
	// connection's TLS handshake; 0 means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// BodyTimeout bounds the time from a request's header to the end of
	// its body, for every request but those of client-streaming methods
	// (whose body is a stream that lives as long as the call): a body
	// still incomplete then is answered 408 with a google.rpc.Status
	// DEADLINE_EXCEEDED (and, on HTTP/1.1, its connection closed), as the
	// raw TCP endpoint bounds a frame's arrival. 0 means
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
	// IdleTimeout closes a connection with no request in flight after
	// this long; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// WriteTimeout closes an HTTP/2 connection whose writes make no
	// progress for this long (a client that does not read); 0 means
	// DefaultWriteTimeout. HTTP/1.1 responses have no such timeout: each
	// is one message, which the socket's buffers hold.
	WriteTimeout time.Duration
	// KeepaliveTime is how long an HTTP/2 connection may be silent before
	// the server pings it, and KeepaliveTimeout how long it then waits for
	// the answer before closing it; 0 means DefaultKeepaliveTime and
	// DefaultKeepaliveTimeout.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// MaxConnectionAge is how long a connection may live: past it (±10%)
	// an HTTP/2 connection is sent GOAWAY and closes once its requests
	// are done, an HTTP/1.1 one closes after its response in flight, so
	// that long-lived clients reconnect and rebalance, as on the other
	// transports. 0 means no limit. With it each connection is served by
	// an http.Server of its own, which costs a goroutine and a few hundred
	// bytes more per connection.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace is how long requests may go on after
	// MaxConnectionAge; past it the connection is closed, which ends them
	// (their clients see UNAVAILABLE). 0 means they may take as long as
	// they need.
	MaxConnectionAgeGrace time.Duration
}

// Server is the HTTP endpoint. It implements grpc.ServiceRegistrar and
// reflection's ServiceInfoProvider: register services on it as on the
// other endpoints, before Serve.
type Server struct {
	opts    Options
	backend *grpcserver.Server
	hs      *http.Server
	mux     *http.ServeMux

	mu       sync.Mutex
	patterns map[string]bool // registered on mux
	active   int             // requests in a handler
	idle     chan struct{}   // closed when active drops to 0, if set

	once     sync.Once // builds the routes, at the first Serve
	buildErr error
	shutdown atomic.Bool
	refused  refusals
	lis      net.Listener           // served by serveAgeing, closed by Shutdown
	aged     map[*agedConn]struct{} // connections with a server each, under mu
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	gopts := opts.GRPC
	gopts.OuterUnaryInterceptors = slices.Concat([]grpc.UnaryServerInterceptor{markReachedUnary}, gopts.OuterUnaryInterceptors)
	gopts.OuterStreamInterceptors = slices.Concat([]grpc.StreamServerInterceptor{markReachedStream}, gopts.OuterStreamInterceptors)
	s := &Server{
		opts:     opts,
		backend:  grpcserver.New(gopts),
		mux:      http.NewServeMux(),
		patterns: map[string]bool{},
		aged:     map[*agedConn]struct{}{},
	}
	s.hs = s.newHTTPServer(nil)
	return s
}

// newHTTPServer returns an http.Server configured by s.opts, serving s's
// routes and calling connState, if not nil, on each change of a
// connection's state.
func (s *Server) newHTTPServer(connState func(net.Conn, http.ConnState)) *http.Server {
	logger := s.opts.GRPC.Logger
	if logger == nil {
		logger = slog.Default()
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if s.opts.TLSConfig != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	return &http.Server{
		Handler:           s.track(s.mux),
		Protocols:         &protocols,
		ReadHeaderTimeout: orDefault(s.opts.HeaderTimeout, DefaultHeaderTimeout),
		IdleTimeout:       orDefault(s.opts.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    orDefault(s.opts.MaxHeaderBytes, DefaultMaxHeaderBytes),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: orDefault(s.opts.MaxConcurrentStreams, DefaultMaxConcurrentStreams),
			SendPingTimeout:      orDefault(s.opts.KeepaliveTime, DefaultKeepaliveTime),
			PingTimeout:          orDefault(s.opts.KeepaliveTimeout, DefaultKeepaliveTimeout),
			WriteByteTimeout:     orDefault(s.opts.WriteTimeout, DefaultWriteTimeout),
		},
		ConnState: connState,
		// net/http's own complaints (a TLS handshake that failed, a
		// malformed request) are a scanner's noise more often than not.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

// RegisterService registers a service implementation, as grpc.Server does.
// Register every service before Serve.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.backend.RegisterService(desc, impl)
}

// GetServiceInfo returns the registered services and their methods, as
// grpc.Server does (server reflection lists them).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo { return s.backend.GetServiceInfo() }

// Handle serves pattern (an http.ServeMux pattern) with h, beside the
// RPC routes: a WebSocket endpoint at "/ws", a web page at "/". It panics
// if pattern is already handled, as http.ServeMux does; "/", unless
// handled, answers 404 with a JSON google.rpc.Status. Call it before
// Serve. CORS and BodyTimeout apply only to the RPC routes; h sees every
// other limit.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mux.Handle(pattern, h)
	s.patterns[pattern] = true
}

// RegisterOnShutdown registers f to be called when Shutdown begins, as
// http.Server.RegisterOnShutdown does: a handler that hijacks its
// connection (a WebSocket) or runs as long as its client wants should end
// then, since Shutdown waits for every handler to return.
func (s *Server) RegisterOnShutdown(f func()) { s.hs.RegisterOnShutdown(f) }

// Serve accepts connections on lis, within MaxConnections and
// MaxConnectionsPerAddr, until Shutdown, then returns ErrServerClosed; any
// other error is an accept failure or a configuration the routes could not
// be built from (a google.api.http rule vanguard refuses).
func (s *Server) Serve(lis net.Listener) error {
	if err := s.routes(); err != nil {
		lis.Close()
		return err
	}
	lis = endpoint.LimitListener(lis, orDefault(s.opts.MaxConnections, DefaultMaxConnections),
		orDefault(s.opts.MaxConnectionsPerAddr, DefaultMaxConnectionsPerAddr))
	if s.opts.TLSConfig != nil {
		lis = tls.NewListener(lis, serverTLS(s.opts.TLSConfig))
	}
	if s.opts.MaxConnectionAge > 0 {
		s.mu.Lock()
		closed := s.shutdown.Load()
		if !closed {
			s.lis = lis
		}
		s.mu.Unlock()
		if closed {
			lis.Close()
			return ErrServerClosed
		}
		return s.serveAgeing(lis)
	}
	err := s.hs.Serve(lis)
	if s.shutdown.Load() || errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops accepting, sends HTTP/2 connections GOAWAY, closes idle
// connections and lets requests in flight, streams included, finish; then
// it closes the connections. If ctx ends first, the connections are closed
// at once, which cancels the calls still running (their clients see the
// connection end: UNAVAILABLE), and Shutdown returns ctx's error, or an
// error naming the handlers that have not returned a further 2 s later.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown.Store(true)
	if s.lis != nil {
		s.lis.Close()
	}
	servers := []*http.Server{s.hs}
	for a := range s.aged {
		servers = append(servers, a.hs)
	}
	s.mu.Unlock()
	errs := make(chan error, len(servers))
	for _, hs := range servers {
		go func() { errs <- hs.Shutdown(ctx) }()
	}
	var err error
	for range servers {
		if e := <-errs; e != nil {
			err = e
		}
	}
	if err == nil {
		return s.backend.Shutdown(ctx)
	}
	for _, hs := range servers {
		hs.Close()
	}
	_ = s.backend.Shutdown(ctx) // ctx is done: this cancels what runs
	if left := s.waitHandlers(2 * time.Second); left > 0 {
		return fmt.Errorf("httpserver: %d requests still run handlers that ignore cancellation after the drain deadline", left)
	}
	return err
}

// routes mounts the transcoder, once, on the services registered by now.
func (s *Server) routes() error {
	s.once.Do(func() { s.buildErr = s.build() })
	return s.buildErr
}

func (s *Server) build() error {
	maxMsg := orDefault(s.opts.GRPC.MaxRecvMsgSize, grpcserver.DefaultMaxRecvMsgSize)
	var services []*vanguard.Service
	var descs []protoreflect.ServiceDescriptor
	for name := range s.backend.GetServiceInfo() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			return fmt.Errorf("httpserver: service %s: %w", name, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return fmt.Errorf("httpserver: %s is not a service", name)
		}
		descs = append(descs, sd)
		services = append(services, vanguard.NewServiceWithSchema(sd, s.backend))
	}
	transcoder, err := vanguard.NewTranscoder(services, append(compression(maxMsg),
		vanguard.WithDefaultServiceOptions(
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithTargetCompression(vanguard.CompressionGzip, grpcsnappy.Name), // the gRPC server's
			vanguard.WithMaxMessageBufferBytes(uint32(maxMsg)),
		),
		vanguard.WithUnknownHandler(http.HandlerFunc(notFound)),
		vanguard.WithCodec(func(r vanguard.TypeResolver) vanguard.Codec { return jsonCodec{vanguard.NewJSONCodec(r)} }),
		vanguard.WithCodec(func(r vanguard.TypeResolver) vanguard.Codec { return protoCodec{vanguard.NewProtoCodec(r)} }),
	)...)
	if err != nil {
		return fmt.Errorf("httpserver: %w", err)
	}
	unary, clientStreaming := methodPaths(descs)
	var rpc http.Handler = transcoder
	rpc = restQuery(rpc, restRules(descs))
	rpc = connectUnary(rpc, unary, maxMsg)
	rpc = bodyTimeout(rpc, clientStreaming, orDefault(s.opts.BodyTimeout, DefaultBodyTimeout), maxMsg)
	rpc = s.opts.CORS.wrap(rpc)
	rpc = s.countRefusals(rpc)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range mountPoints(descs) {
		if s.patterns[p] {
			return fmt.Errorf("httpserver: %s is both an RPC route and handled by Handle", p)
		}
		s.mux.Handle(p, rpc)
	}
	if !s.patterns["/"] {
		s.mux.Handle("/", s.countRefusals(http.HandlerFunc(notFound)))
	}
	return nil
}

// mountPoints are the mux patterns the transcoder serves: each service's
// path prefix, and the first segment of each REST path its methods' google.api.http
// rules declare.
func mountPoints(services []protoreflect.ServiceDescriptor) []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, sd := range services {
		add("/" + string(sd.FullName()) + "/")
		methods := sd.Methods()
		for i := range methods.Len() {
			rule, ok := proto.GetExtension(methods.Get(i).Options(), annotations.E_Http).(*annotations.HttpRule)
			if !ok || rule == nil {
				continue
			}
			for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
				if p := restPrefix(r); p != "" {
					add(p)
				}
			}
		}
	}
	return out
}

// restPrefix is the mux pattern of a rule's path: its first segment, as
// "/v1/", or the whole path when it has one segment.
func restPrefix(r *annotations.HttpRule) string {
	_, path := rulePath(r)
	first, rest, more := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	switch {
	case first == "" || strings.ContainsAny(first, "{*:"):
		return "/" // a variable first segment: the whole tree
	case more || rest != "":
		return "/" + first + "/"
	}
	return "/" + first
}

// methodPaths returns the paths of the unary methods and of those whose
// requests are streams.
func methodPaths(services []protoreflect.ServiceDescriptor) (unary, clientStreaming map[string]bool) {
	unary, clientStreaming = map[string]bool{}, map[string]bool{}
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			m := methods.Get(i)
			path := "/" + string(sd.FullName()) + "/" + string(m.Name())
			switch {
			case m.IsStreamingClient():
				clientStreaming[path] = true
			case !m.IsStreamingServer():
				unary[path] = true
			}
		}
	}
	return unary, clientStreaming
}

// track counts the requests in a handler, for Shutdown.
func (s *Server) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.active++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			if s.active--; s.active == 0 && s.idle != nil {
				close(s.idle)
				s.idle = nil
			}
			s.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

// waitHandlers waits up to d for every handler to return and returns how
// many still run.
func (s *Server) waitHandlers(d time.Duration) int {
	s.mu.Lock()
	if s.active == 0 {
		s.mu.Unlock()
		return 0
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// serverTLS returns the configuration the server's connections use: a
// clone of cfg requiring TLS 1.3 and offering ALPN "h2" and "http/1.1",
// also in the configuration cfg's GetConfigForClient returns for a client
// (which replaces cfg for that handshake).
func serverTLS(cfg *tls.Config) *tls.Config {
	restrict := func(c *tls.Config) *tls.Config {
		c = c.Clone()
		c.MinVersion = max(c.MinVersion, tls.VersionTLS13)
		c.NextProtos = []string{"h2", "http/1.1"}
		return c
	}
	out := restrict(cfg)
	if get := cfg.GetConfigForClient; get != nil {
		out.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := get(hello)
			if c == nil || err != nil {
				return c, err
			}
			return restrict(c), nil
		}
	}
	return out
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
