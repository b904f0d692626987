// Package tcpserver serves gRPC service implementations over calc's raw TCP
// protocol (PROTOCOL.md) on Go's netpoller.
//
// A Server implements grpc.ServiceRegistrar, so the generated registration
// function works on it unchanged and the very service value registered on a
// grpc.Server can be registered here too:
//
//	srv := tcpserver.New(tcpserver.Options{})
//	calculatorv1.RegisterCalculatorServiceServer(srv, svc)
//	go srv.Serve(lis)
//	...
//	srv.Shutdown(ctx)
//
// # The engine
//
// A connection is served by one goroutine while it is busy and, on Linux,
// by none while it is idle (a TLS connection, Options.TLSConfig, keeps its
// goroutine: tls.go). Its life has four stages, one file each:
//
//   - admission (admit.go): the server-wide budgets a new connection must
//     fit: connections in all, connections per remote address, and
//     connections still in the handshake (the oldest of which is dropped
//     when a new one needs its place);
//   - reading (read.go): the connection's goroutine reads a burst of frames
//     in as few read calls as fit a pooled buffer, reads on directly for a
//     millisecond after the burst, then waits for readability without a
//     buffer, and after 100 ms of quiet hands the connection to the idler
//     (idle.go) and exits;
//   - dispatch (dispatch.go, call.go, stream.go, pool.go): each frame is
//     handled in turn; a unary call runs on the connection's goroutine when
//     its method is one of Options.InlineMethods, in a goroutine of its own
//     otherwise, or on a bounded worker pool (Options.Dispatch); a stream
//     runs in a goroutine of its own, except one of an inline method, which
//     runs on the connection's goroutine and reads the connection itself
//     while it waits for input. Every call is recovered: a panicking
//     handler answers INTERNAL and the connection serves on;
//   - writing (write.go): answers are coalesced by a wire.Writer; while a
//     burst is served the writer is corked and flushed every 16 frames.
//
// Every accepted call is answered exactly once, then counted out of the
// connection's one in-flight counter; a connection closes when its peer
// has gone and that counter is zero.
package tcpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/internal/busypoll"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/endpoint"
)

// ErrServerClosed is returned by Serve after Shutdown. It is
// endpoint.ErrServerClosed, the one every calc endpoint returns.
var ErrServerClosed = endpoint.ErrServerClosed

// Defaults for the zero Options.
const (
	DefaultMaxConnections        = 10000
	DefaultMaxConnectionsPerAddr = 1024
	DefaultMaxHandshakes         = 1024
	DefaultMaxConcurrentCalls    = 1024
	DefaultMaxConcurrentStreams  = 100
	DefaultMaxStreams            = 10000
	DefaultMaxPendingFrameBytes  = 64 << 20
	DefaultHandshakeTimeout      = 10 * time.Second
	DefaultFrameTimeout          = 10 * time.Second
	DefaultIdleTimeout           = 5 * time.Minute
	DefaultWriteTimeout          = 10 * time.Second
)

// StreamBuffer is how many received messages a stream holds for its handler;
// past it the connection stops reading until the handler catches up.
const StreamBuffer = 64

// MaxMethodRefs is how many method refs a connection may bind.
const MaxMethodRefs = 256

// Options configures a Server. The zero value of every field means the
// documented default.
type Options struct {
	// Logger receives connection-level events and handler panics; nil
	// means slog.Default().
	Logger *slog.Logger
	// UnaryInterceptors run around every unary call, first outermost, as
	// with grpc.ChainUnaryInterceptor.
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// StreamInterceptors run around every streaming call, first outermost.
	StreamInterceptors []grpc.StreamServerInterceptor
	// InlineMethods names methods ("/pkg.Service/Method") whose handlers
	// are cheap and never block. A unary one runs, interceptors included,
	// on its connection's goroutine: no goroutine and no context switch
	// per call, and answers to a burst of pipelined calls leave in one write.
	// A streaming one runs there too when no other inline stream does, and
	// reads the connection itself whenever it waits in RecvMsg (serving the
	// frames of every other call meanwhile), so its handler must do nothing
	// between RecvMsg and SendMsg but compute; other streams run in
	// goroutines of their own.
	// The price: while one runs, its connection reads nothing else, so a
	// slow or blocking handler stalls its connection (CANCEL frames
	// included). Other methods run in a goroutine per call. Only
	// DispatchInline (the default) runs them inline.
	InlineMethods []string
	// Codec encodes and decodes messages in place of protobuf-go, for
	// services that know a faster way for theirs (calccodec.Codec); nil
	// means protobuf-go.
	Codec wire.Codec
	// Dispatch is where unary handlers run: DispatchInline (the zero
	// value: InlineMethods on the connection's goroutine, the others in a
	// goroutine each), DispatchGoroutine or DispatchPool.
	Dispatch Dispatch
	// Workers caps DispatchPool's worker goroutines; 0 means one per CPU
	// (runtime.GOMAXPROCS).
	Workers int
	// QueueSize is how many calls DispatchPool's queue holds before
	// connections wait for a worker; 0 means DefaultQueueSize.
	QueueSize int

	// MaxConnections caps connections past the handshake; one past it is
	// sent GOAWAY RESOURCE_EXHAUSTED and closed. Connections still in the
	// handshake do not count (see MaxHandshakes). 0 means
	// DefaultMaxConnections.
	MaxConnections int
	// MaxConnectionsPerAddr caps the connections from one remote IP
	// address, in the handshake or past it; one past it is sent GOAWAY
	// RESOURCE_EXHAUSTED and closed. Behind a proxy every client shares the
	// proxy's address: raise it there. 0 means DefaultMaxConnectionsPerAddr.
	MaxConnectionsPerAddr int
	// MaxHandshakes caps connections that have not yet sent their preface.
	// When a new connection arrives at the cap, the oldest of them is
	// closed to make room, so sockets that connect and say nothing cannot
	// lock other clients out. 0 means DefaultMaxHandshakes.
	MaxHandshakes int
	// MaxConcurrentCalls caps calls in flight per connection, streams
	// included; at the cap the server stops reading the connection until a
	// call ends (backpressure). 0 means DefaultMaxConcurrentCalls.
	MaxConcurrentCalls int
	// MaxConcurrentStreams caps the streaming calls open on one
	// connection; a stream past it is refused with RESOURCE_EXHAUSTED. 0
	// means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams int
	// MaxStreams caps the streaming calls open on the whole server; a
	// stream past it is refused with RESOURCE_EXHAUSTED. 0 means
	// DefaultMaxStreams.
	MaxStreams int
	// MaxPendingFrameBytes caps the memory that all connections together
	// hold in frames too large for a pooled read buffer (16 KiB) while
	// their bytes arrive. A connection whose frame finds the budget spent
	// is sent GOAWAY RESOURCE_EXHAUSTED and closed; smaller frames are not
	// affected. 0 means DefaultMaxPendingFrameBytes (64 MiB).
	MaxPendingFrameBytes int
	// MaxFrameSize caps a frame's length prefix; 0 means
	// wire.DefaultMaxFrameSize.
	MaxFrameSize int
	// MaxMessageSize caps a message after decompression; 0 means
	// wire.DefaultMaxMessageSize.
	MaxMessageSize int
	// CompressThreshold is the message size at which responses are
	// snappy-compressed; 0 means wire.DefaultCompressThreshold and a
	// negative value disables compression.
	CompressThreshold int

	// MaxConnectionAge is how long a connection may live: past it (±10%)
	// the server sends GOAWAY, lets the calls in flight finish and closes
	// it, so that long-lived clients reconnect and rebalance, as grpc-go's
	// keepalive.ServerParameters.MaxConnectionAge. 0 means no limit.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace is how long calls may go on after
	// MaxConnectionAge's GOAWAY; past it they end with UNAVAILABLE. 0 means
	// they may take as long as they need.
	MaxConnectionAgeGrace time.Duration
	// HandshakeTimeout bounds the wait for the client's preface; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// FrameTimeout bounds the time from a frame's first byte to its last;
	// 0 means DefaultFrameTimeout.
	FrameTimeout time.Duration
	// IdleTimeout closes a connection with no call in flight that sent
	// nothing for this long; 0 means DefaultIdleTimeout and a negative value
	// disables it.
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose writes make no progress for
	// this long (a peer that does not read); 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// BusyPoll is how long a connection that has just served a burst of
	// several frames polls its socket for the next burst, yielding its
	// processor between checks, before it parks on the netpoller: a peer
	// with many calls in flight writes again within microseconds, and a
	// parked connection costs a wake-up that takes longer (package
	// busypoll has the rules that keep polling cheap). 0 means
	// busypoll.Default (50 µs), a negative value disables polling, and
	// more than busypoll.Max (1 ms) means busypoll.Max.
	BusyPoll time.Duration

	// TLSConfig, when set, serves every connection over TLS (PROTOCOL.md,
	// TLS): the server uses a clone with TLS 1.3 at least and ALPN
	// "calc/1", which clients must ask for. The TLS handshake is part of
	// the handshake stage, under HandshakeTimeout and MaxHandshakes. A
	// connection refused before its handshake (MaxConnectionsPerAddr) is
	// closed without a GOAWAY, and an idle TLS connection keeps a
	// goroutine and a read buffer (no idle parking). nil means plaintext.
	TLSConfig *tls.Config
}

// withDefaults returns o with every zero field set to its default: the one
// place defaults are filled.
func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	def(&o.MaxConnections, DefaultMaxConnections)
	def(&o.Workers, defaultWorkers())
	def(&o.QueueSize, DefaultQueueSize)
	def(&o.MaxConnectionsPerAddr, DefaultMaxConnectionsPerAddr)
	def(&o.MaxHandshakes, DefaultMaxHandshakes)
	def(&o.MaxConcurrentCalls, DefaultMaxConcurrentCalls)
	def(&o.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	def(&o.MaxStreams, DefaultMaxStreams)
	def(&o.MaxPendingFrameBytes, DefaultMaxPendingFrameBytes)
	def(&o.MaxFrameSize, wire.DefaultMaxFrameSize)
	def(&o.MaxMessageSize, wire.DefaultMaxMessageSize)
	def(&o.CompressThreshold, wire.DefaultCompressThreshold)
	defDur(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	defDur(&o.FrameTimeout, DefaultFrameTimeout)
	defDur(&o.IdleTimeout, DefaultIdleTimeout)
	defDur(&o.WriteTimeout, DefaultWriteTimeout)
	defDur(&o.BusyPoll, busypoll.Default)
	return o
}

// Server serves registered services over the raw TCP protocol.
type Server struct {
	opts     Options     // defaults filled
	tls      *tls.Config // serverTLS(opts.TLSConfig); nil for plaintext
	logger   *slog.Logger
	unary    grpc.UnaryServerInterceptor
	stream   grpc.StreamServerInterceptor
	settings []byte // the SETTINGS frame every connection gets
	methods  map[string]*method
	services map[string]grpc.ServiceInfo // for GetServiceInfo
	idle     idler                       // holds quiet connections (idle.go)
	frames   *wire.Budget                // memory of large frames being received, server-wide
	readers  sync.Pool                   // *wire.Reader lent to connections while they read (conn.takeReader)
	streams  atomic.Int64                // open streams, server-wide
	serving  atomic.Int32                // connections busy reading (read.go), for busypoll
	counters counters                    // for Stats (stats.go)
	pool     *pool                       // DispatchPool's workers, else nil

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	admission admission // guarded by mu (admit.go)
	shutdown  atomic.Bool
	connsDone chan struct{} // closed when the last connection goes during shutdown
}

// method is one registered method.
type method struct {
	name   string
	impl   any
	unary  *grpc.MethodDesc
	stream *grpc.StreamDesc
	sinfo  grpc.StreamServerInfo
	inline bool // run on the connection's goroutine (Options.InlineMethods, DispatchInline)
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		opts:      opts,
		logger:    opts.Logger,
		unary:     chainUnary(opts.UnaryInterceptors),
		stream:    chainStream(opts.StreamInterceptors),
		methods:   map[string]*method{},
		services:  map[string]grpc.ServiceInfo{},
		listeners: map[net.Listener]struct{}{},
		admission: newAdmission(),
		idle:      newIdler(opts.IdleTimeout),
		frames:    wire.NewBudget(opts.MaxPendingFrameBytes),
		tls:       serverTLS(opts.TLSConfig),
	}
	if opts.Dispatch == DispatchPool {
		s.pool = newPool(opts.Workers, opts.QueueSize)
	}
	s.settings = wire.AppendSettingsFrame(nil, wire.Settings{
		MaxFrameSize:       uint32(opts.MaxFrameSize),
		MaxMessageSize:     uint32(opts.MaxMessageSize),
		CompressThreshold:  uint32(max(opts.CompressThreshold, 0)),
		MaxConcurrentCalls: uint32(opts.MaxConcurrentCalls),
		IdleTimeout:        max(opts.IdleTimeout, 0),
	})
	return s
}

// RegisterService registers a service and its implementation, as
// grpc.Server.RegisterService does. It must be called before Serve.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	info := grpc.ServiceInfo{Metadata: desc.Metadata}
	for i := range desc.Methods {
		md := &desc.Methods[i]
		name := "/" + desc.ServiceName + "/" + md.MethodName
		s.methods[name] = &method{name: name, impl: impl, unary: md, inline: s.opts.Dispatch == DispatchInline && slices.Contains(s.opts.InlineMethods, name)}
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: md.MethodName})
	}
	for i := range desc.Streams {
		sd := &desc.Streams[i]
		name := "/" + desc.ServiceName + "/" + sd.StreamName
		s.methods[name] = &method{name: name, impl: impl, stream: sd,
			sinfo:  grpc.StreamServerInfo{FullMethod: name, IsClientStream: sd.ClientStreams, IsServerStream: sd.ServerStreams},
			inline: s.opts.Dispatch == DispatchInline && slices.Contains(s.opts.InlineMethods, name)}
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: sd.StreamName, IsClientStream: sd.ClientStreams, IsServerStream: sd.ServerStreams})
	}
	s.services[desc.ServiceName] = info
}

// GetServiceInfo returns the registered services and their methods, as
// grpc.Server.GetServiceInfo does (server reflection lists them).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo { return maps.Clone(s.services) }

// Serve accepts connections on lis and serves each in its own goroutine
// until Shutdown, when it returns ErrServerClosed. Temporary accept errors
// are retried with backoff, as net/http does.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[lis] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, lis)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := lis.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger.Warn("accept failed; retrying", "error", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c, refusal := s.admit(nc)
		if c == nil {
			go s.refuse(nc, refusal)
			continue
		}
		go c.serve()
	}
}

// ServeConn serves one connection that was accepted elsewhere, such as the
// byte stream of a WebSocket (server/wsserver), exactly as Serve serves the
// connections it accepts: the same admission (its limits count nc), preface,
// frames, limits, timeouts and drain; with Options.TLSConfig it is wrapped
// in TLS as they are. authInfo, when not nil, is what handlers find as the
// peer's AuthInfo (peer.FromContext): the credentials.TLSInfo of a TLS
// connection that the caller terminated, say. nc is served in a goroutine
// of its own and closed when it ends; ServeConn returns at once, and after
// Shutdown closes nc and returns ErrServerClosed.
func (s *Server) ServeConn(nc net.Conn, authInfo credentials.AuthInfo) error {
	c, refusal := s.admit(nc)
	if c == nil {
		if s.shutdown.Load() {
			_ = nc.Close()
			return ErrServerClosed
		}
		go s.refuse(nc, refusal)
		return nil
	}
	if authInfo != nil {
		c.peerInfo().AuthInfo = authInfo // no call has started: the peer is still c's alone
	}
	go c.serve()
	return nil
}

// refuse closes a connection that was not admitted, first telling it why
// with a GOAWAY when there is a reason to give, and no TLS handshake to
// spend on it.
func (s *Server) refuse(nc net.Conn, reason string) {
	defer nc.Close()
	if reason == "" || s.tls != nil {
		return
	}
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	n, _ := nc.Write(wire.AppendGoAwayFrame(nil, 0, statusProto(codes.ResourceExhausted, reason)))
	s.counters.bytesOut.Add(uint64(n))
	s.counters.goAwaySent(codes.ResourceExhausted)
}

// Shutdown stops accepting, sends GOAWAY on every connection, lets
// accepted calls finish and closes each connection when its last call is
// answered; streams learn of the drain from the GOAWAY and may finish
// their work. If ctx ends first, every call still running is ended with
// UNAVAILABLE ("server shutting down"), each connection closes after its
// last answer, and Shutdown returns ctx's error. A handler that ignores its
// context's end gets two more seconds; if one is still running then,
// Shutdown closes every connection and reports it. Serve returns
// ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.idle.stop() // after the last connection has closed
	if s.pool != nil {
		defer s.pool.stop()
	}
	s.mu.Lock()
	s.shutdown.Store(true)
	for lis := range s.listeners {
		_ = lis.Close()
	}
	conns := s.admission.all()
	if s.tls != nil {
		// A GOAWAY would wait for a TLS handshake in progress: cut them.
		for c := range s.admission.handshaking {
			delete(s.admission.handshaking, c)
			_ = c.nc.SetReadDeadline(time.Unix(1, 0))
		}
	}
	var done chan struct{}
	if len(conns) > 0 {
		done = make(chan struct{})
		s.connsDone = done
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(codes.OK, "server shutting down")
	}
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// The drain's deadline: what is left ends with UNAVAILABLE. Handlers see
	// their contexts end and answer, and each connection closes after its
	// last answer.
	for _, c := range conns {
		c.cancel(errDrainDeadline)
	}
	select {
	case <-done:
		return ctx.Err()
	case <-time.After(time.Second):
	}
	for _, c := range conns {
		c.close()
	}
	select {
	case <-done:
		return ctx.Err()
	case <-time.After(time.Second):
	}
	s.mu.Lock()
	left := len(s.admission.conns)
	s.mu.Unlock()
	return fmt.Errorf("tcpserver: %d connections still run handlers that ignore cancellation after the drain deadline", left)
}

// unmarshal decodes a message with the server's codec.
func (s *Server) unmarshal(b []byte, m proto.Message) error {
	if s.opts.Codec != nil {
		return s.opts.Codec.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}
