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
// The engine is a goroutine per busy connection and, on Linux, none per
// idle one.
// A connection's goroutine reads a burst of frames in as few read calls as
// fit a pooled buffer; runs each call in a goroutine of its own so a slow
// handler never blocks its connection (or inline, for the cheap methods
// named in Options.InlineMethods); and corks the answers so that a burst
// gets them in one write. Answers are coalesced: the goroutine that finds
// the write buffer idle writes out everything other calls appended
// meanwhile, so a connection has no writer goroutine. After a burst the
// goroutine reads on for a millisecond, then gives its read buffer back and
// waits for readability; after 100 ms of quiet it hands the connection to
// the server's parker and exits. On Linux the parker holds idle connections
// in an epoll instance of its own and starts a goroutine again when one
// turns readable; elsewhere an idle connection waits in a fresh goroutine,
// on the smallest stack.
package tcpserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/calcrpc/calc/internal/wire"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("tcpserver: server closed")

// Defaults for the zero Options.
const (
	DefaultMaxConnections     = 10000
	DefaultMaxConcurrentCalls = 1024
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultFrameTimeout       = 10 * time.Second
	DefaultIdleTimeout        = 5 * time.Minute
	DefaultWriteTimeout       = 10 * time.Second
)

// StreamBuffer is how many received messages a stream holds for its handler;
// past it the connection stops reading until the handler catches up.
const StreamBuffer = 64

// MaxMethodRefs is how many method refs a connection may bind.
const MaxMethodRefs = 256

// Options configures a Server. The zero value means the documented defaults.
type Options struct {
	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger
	// UnaryInterceptors run around every unary call, first outermost, as
	// with grpc.ChainUnaryInterceptor.
	UnaryInterceptors []grpc.UnaryServerInterceptor
	// StreamInterceptors run around every streaming call, first outermost.
	StreamInterceptors []grpc.StreamServerInterceptor
	// InlineMethods names unary methods ("/pkg.Service/Method") whose
	// handlers are cheap and never block. They run, interceptors included,
	// on their connection's goroutine: no goroutine and no context switch
	// per call, and answers to a burst of pipelined calls leave in one write.
	// The price: while one runs, its connection reads nothing else, so a
	// slow or blocking handler stalls its connection (CANCEL frames
	// included). Other methods run in a goroutine per call.
	InlineMethods []string
	// MaxConnections caps open connections; a connection past it is sent
	// GOAWAY RESOURCE_EXHAUSTED and closed. 0 means DefaultMaxConnections.
	MaxConnections int
	// MaxConcurrentCalls caps calls in flight per connection; at the cap the
	// server stops reading the connection. 0 means DefaultMaxConcurrentCalls.
	MaxConcurrentCalls int
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
}

// Server serves registered services over the raw TCP protocol.
type Server struct {
	opts     Options
	logger   *slog.Logger
	unary    grpc.UnaryServerInterceptor
	stream   grpc.StreamServerInterceptor
	settings []byte // the SETTINGS frame every connection gets

	methods map[string]*method
	parker  *parker // holds idle connections (park_linux.go)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  atomic.Bool
	connsDone chan struct{} // closed when conns drops to empty during shutdown
}

// method is one registered method.
type method struct {
	name   string
	impl   any
	unary  *grpc.MethodDesc
	stream *grpc.StreamDesc
	sinfo  grpc.StreamServerInfo
	inline bool // run on the connection's goroutine (Options.InlineMethods)
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
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
	def(&opts.MaxConnections, DefaultMaxConnections)
	def(&opts.MaxConcurrentCalls, DefaultMaxConcurrentCalls)
	def(&opts.MaxFrameSize, wire.DefaultMaxFrameSize)
	def(&opts.MaxMessageSize, wire.DefaultMaxMessageSize)
	def(&opts.CompressThreshold, wire.DefaultCompressThreshold)
	defDur(&opts.HandshakeTimeout, DefaultHandshakeTimeout)
	defDur(&opts.FrameTimeout, DefaultFrameTimeout)
	defDur(&opts.IdleTimeout, DefaultIdleTimeout)
	defDur(&opts.WriteTimeout, DefaultWriteTimeout)
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		opts:      opts,
		logger:    logger,
		unary:     chainUnary(opts.UnaryInterceptors),
		stream:    chainStream(opts.StreamInterceptors),
		methods:   map[string]*method{},
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		parker:    newParker(opts.IdleTimeout),
	}
	st := wire.Settings{
		MaxFrameSize:       uint32(opts.MaxFrameSize),
		MaxMessageSize:     uint32(opts.MaxMessageSize),
		CompressThreshold:  uint32(max(opts.CompressThreshold, 0)),
		MaxConcurrentCalls: uint32(opts.MaxConcurrentCalls),
		IdleTimeout:        max(opts.IdleTimeout, 0),
	}
	s.settings = wire.AppendSettingsFrame(nil, st)
	return s
}

// RegisterService registers a service and its implementation, as
// grpc.Server.RegisterService does. It must be called before Serve.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for i := range desc.Methods {
		md := &desc.Methods[i]
		name := "/" + desc.ServiceName + "/" + md.MethodName
		s.methods[name] = &method{name: name, impl: impl, unary: md, inline: slices.Contains(s.opts.InlineMethods, name)}
	}
	for i := range desc.Streams {
		sd := &desc.Streams[i]
		name := "/" + desc.ServiceName + "/" + sd.StreamName
		s.methods[name] = &method{name: name, impl: impl, stream: sd,
			sinfo: grpc.StreamServerInfo{FullMethod: name, IsClientStream: sd.ClientStreams, IsServerStream: sd.ServerStreams}}
	}
}

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
		c, ok := s.track(nc)
		if !ok {
			go s.refuse(nc)
			continue
		}
		go c.serve()
	}
}

// track registers a new connection, or reports false past MaxConnections
// or after Shutdown.
func (s *Server) track(nc net.Conn) (*conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() || len(s.conns) >= s.opts.MaxConnections {
		return nil, false
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	return c, true
}

// untrack forgets a closed connection.
func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.connsDone != nil {
		close(s.connsDone)
		s.connsDone = nil
	}
}

// refuse tells a connection past the limit why it is closed.
func (s *Server) refuse(nc net.Conn) {
	defer nc.Close()
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write(wire.AppendGoAwayFrame(nil, 0, statusProto(codes.ResourceExhausted, "too many connections")))
}

// Shutdown stops accepting, sends GOAWAY on every connection, lets
// accepted calls finish and closes each connection when its last call is
// answered. If ctx ends first, it cancels the remaining calls' contexts,
// sends their answers, closes every connection and returns ctx's error.
// Serve returns ErrServerClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.parker.stop() // after the last connection has closed
	s.mu.Lock()
	s.shutdown.Store(true)
	for lis := range s.listeners {
		_ = lis.Close()
	}
	var done chan struct{}
	if len(s.conns) > 0 {
		done = make(chan struct{})
		s.connsDone = done
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
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
		// Cancel what is left: handlers see their contexts end and answer
		// (CANCELLED, typically), and each connection closes after its last
		// answer. A handler that ignores its context gets one more second.
		for _, c := range conns {
			c.cancel()
		}
		select {
		case <-done:
		case <-time.After(time.Second):
			for _, c := range conns {
				c.close()
			}
			<-done
		}
		return ctx.Err()
	}
}
