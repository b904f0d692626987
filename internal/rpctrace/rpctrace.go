// Package rpctrace gives calc's raw TCP transport the OpenTelemetry spans
// that otelgrpc (go.opentelemetry.io/contrib/.../otelgrpc v0.72.0) gives
// gRPC, so that a trace crosses transports and the two look alike in a
// tracing backend: the same span name (the full method without its
// leading slash, "calculator.v1.CalculatorService/Calculate"), kind, and
// attributes under the same semantic conventions (v1.43 by default:
// rpc.system.name "grpc", rpc.method, rpc.response.status_code,
// server.address and server.port; the v1.37 names rpc.system,
// rpc.service and rpc.method with OTEL_SEMCONV_STABILITY_OPT_IN=rpc/old,
// both with rpc/dup), the same span status rules, and the span context
// carried in the call's metadata by the W3C traceparent and tracestate
// keys (PROTOCOL.md, Metadata).
//
// A Server's interceptors extract the caller's context from the request
// metadata and run the handler in a server span; a Client starts a client
// span and injects its context into the outgoing metadata. Each method's
// name and start options are built once, so a call that is not sampled
// costs the TracerProvider's sampling decision and little else.
package rpctrace

import (
	"context"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconvold "go.opentelemetry.io/otel/semconv/v1.37.0"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/calcrpc/calc/internal/wire"
)

// ScopeName is the instrumentation scope of the spans: otelgrpc's, so
// that a backend groups both transports' spans together.
const ScopeName = "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"

// Propagator returns the W3C Trace Context and Baggage propagator, which
// calc uses on both transports unless told otherwise.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// semconvMode is which semantic conventions the spans follow, read from
// OTEL_SEMCONV_STABILITY_OPT_IN as otelgrpc reads it.
type semconvMode int

const (
	semconvNew semconvMode = iota // v1.43, otelgrpc's default
	semconvOld                    // v1.37: "rpc/old"
	semconvDup                    // both: "rpc/dup"
)

func semconvModeFromEnv() semconvMode {
	for p := range strings.SplitSeq(os.Getenv("OTEL_SEMCONV_STABILITY_OPT_IN"), ",") {
		switch strings.TrimSpace(p) {
		case "rpc/dup":
			return semconvDup
		case "rpc/old":
			return semconvOld
		}
	}
	return semconvNew
}

// tracer is what a Server and a Client share: the tracer, the
// propagator and each method's span name and start options, built once.
type tracer struct {
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	kind    trace.SpanKind
	mode    semconvMode
	methods sync.Map // full method name → *methodSpan
}

// methodSpan is what every span of one method starts with.
type methodSpan struct {
	name string
	opts []trace.SpanStartOption
}

func newTracer(tp trace.TracerProvider, prop propagation.TextMapPropagator, kind trace.SpanKind) tracer {
	if prop == nil {
		prop = Propagator()
	}
	return tracer{
		tracer: tp.Tracer(ScopeName, trace.WithInstrumentationVersion(otelgrpcVersion)),
		prop:   prop,
		kind:   kind,
		mode:   semconvModeFromEnv(),
	}
}

// otelgrpcVersion is the otelgrpc release whose spans these copy.
const otelgrpcVersion = "0.72.0"

// method returns the span name and start options of fullMethod.
func (t *tracer) method(fullMethod string) *methodSpan {
	if m, ok := t.methods.Load(fullMethod); ok {
		return m.(*methodSpan)
	}
	name, attrs := spanShape(fullMethod, t.mode)
	m := &methodSpan{name: name, opts: []trace.SpanStartOption{trace.WithSpanKind(t.kind), trace.WithAttributes(attrs...)}}
	got, _ := t.methods.LoadOrStore(fullMethod, m)
	return got.(*methodSpan)
}

// spanShape returns the span name and attributes otelgrpc gives a call of
// fullMethod ("/package.Service/Method") under mode.
func spanShape(fullMethod string, mode semconvMode) (string, []attribute.KeyValue) {
	if !strings.HasPrefix(fullMethod, "/") {
		return fullMethod, nil // otelgrpc adds nothing, not even rpc.system.name
	}
	name := fullMethod[1:]
	newAttrs := []attribute.KeyValue{semconv.RPCMethod(name)}
	var oldAttrs []attribute.KeyValue
	if service, method, ok := strings.Cut(name, "/"); ok {
		if i := strings.IndexByte(method, '/'); i >= 0 {
			method = method[:i] // strings.Split's second part, as otelgrpc takes it
		}
		oldAttrs = []attribute.KeyValue{semconvold.RPCSystemKey.String("grpc"), semconvold.RPCServiceKey.String(service), semconvold.RPCMethodKey.String(method)}
	} else {
		oldAttrs = []attribute.KeyValue{attribute.String("rpc.system", "grpc")}
	}
	switch mode {
	case semconvOld:
		return name, oldAttrs
	case semconvDup:
		// Old first, so that the new rpc.method wins when deduplicated.
		return name, append(append(oldAttrs, newAttrs...), semconv.RPCSystemNameGRPC)
	default:
		return name, append(newAttrs, semconv.RPCSystemNameGRPC)
	}
}

// end records a call's outcome on span, as otelgrpc does at the call's
// end: rpc.response.status_code always, an Error status by statusOf, and
// ends it. A span that is not recording is left alone.
func end(span trace.Span, err error, statusOf func(*status.Status) (otelcodes.Code, string)) {
	if !span.IsRecording() {
		return
	}
	code := codes.OK
	if err != nil {
		s, _ := status.FromError(err)
		code = s.Code()
		c, msg := statusOf(s)
		span.SetStatus(c, msg)
	}
	span.SetAttributes(semconv.RPCResponseStatusCode(CodeName(code)))
	span.End()
}

// serverStatus is otelgrpc's server rule: only codes that mean the server
// failed make the span an error.
func serverStatus(s *status.Status) (otelcodes.Code, string) {
	switch s.Code() {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return otelcodes.Error, s.Message()
	}
	return otelcodes.Unset, ""
}

// clientStatus is otelgrpc's client rule: every failed call is an error.
func clientStatus(s *status.Status) (otelcodes.Code, string) { return otelcodes.Error, s.Message() }

// CodeName is a status code's canonical name as the semantic conventions
// and otelgrpc write it ("CANCELLED", not Go's "Canceled"; "CODE(17)" for
// a code past UNAUTHENTICATED).
func CodeName(c codes.Code) string {
	if c > codes.Unauthenticated {
		return "CODE(" + strconv.FormatInt(int64(c), 10) + ")"
	}
	return wire.CodeName(c)
}

// serverAddrAttrs are server.address and server.port of a host:port, as
// otelgrpc writes them.
func serverAddrAttrs(addr net.Addr) []attribute.KeyValue {
	hostport := addr.String()
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(hostport)}
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(h)}
	}
	return []attribute.KeyValue{semconv.ServerAddress(h), semconv.ServerPort(port)}
}

// Server makes the server spans of raw TCP calls.
type Server struct {
	t         tracer
	fields    []string // the metadata keys the propagator reads
	onlyJoins bool
}

// NewServer returns a Server whose spans come from tp, with the callers'
// context extracted by prop (nil: Propagator()). With onlyJoins, a call
// whose metadata carries no trace context runs without a span, at no
// cost: set it when tp samples no trace it would start itself
// (otelenv.Tracing.RootsUnsampled), so that the spans recorded are the
// same and only the calls in a caller's trace pay for tracing. The
// access log of such a call names no trace; without onlyJoins it would
// name a trace id made up for it and never exported.
func NewServer(tp trace.TracerProvider, prop propagation.TextMapPropagator, onlyJoins bool) *Server {
	s := &Server{t: newTracer(tp, prop, trace.SpanKindServer), onlyJoins: onlyJoins}
	s.fields = s.t.prop.Fields()
	if onlyJoins && slices.Contains(s.fields, "traceparent") {
		// Only a traceparent makes a call join a trace (tracestate and
		// baggage alone do not): one lookup for the calls that bring none.
		s.fields = []string{"traceparent"}
	}
	return s
}

// start extracts the caller's span context from ctx's incoming metadata
// and starts the server span of fullMethod. It returns a nil span, and
// ctx, for a call it does not trace (onlyJoins).
func (s *Server) start(ctx context.Context, fullMethod string) (context.Context, trace.Span) {
	joins := false
	for _, f := range s.fields { // most calls carry none: no carrier, no copy
		if len(metadata.ValueFromIncomingContext(ctx, f)) > 0 {
			ctx = s.t.prop.Extract(ctx, incoming{ctx})
			joins = true
			break
		}
	}
	if !joins && s.onlyJoins {
		return ctx, nil
	}
	m := s.t.method(fullMethod)
	ctx, span := s.t.tracer.Start(ctx, m.name, m.opts...)
	if span.IsRecording() {
		if p, ok := peer.FromContext(ctx); ok && p.LocalAddr != nil {
			span.SetAttributes(serverAddrAttrs(p.LocalAddr)...)
		}
	}
	return ctx, span
}

// UnaryServerInterceptor runs each unary call in a server span. Install
// it outermost, so that the span covers the whole call and the access log
// inside sees it.
func (s *Server) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, span := s.start(ctx, info.FullMethod)
		resp, err := handler(ctx, req)
		if span != nil {
			end(span, err, serverStatus)
		}
		return resp, err
	}
}

// StreamServerInterceptor runs each stream in a server span, like
// UnaryServerInterceptor.
func (s *Server) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, span := s.start(ss.Context(), info.FullMethod)
		if span == nil {
			return handler(srv, ss)
		}
		err := handler(srv, &spanStream{ServerStream: ss, ctx: ctx})
		end(span, err, serverStatus)
		return err
	}
}

// spanStream is a server stream whose context holds its span.
type spanStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *spanStream) Context() context.Context { return s.ctx }

// Client makes the client spans of raw TCP calls.
type Client struct{ t tracer }

// NewClient returns a Client whose spans come from tp, with their context
// injected into the calls' metadata by prop (nil: Propagator()).
func NewClient(tp trace.TracerProvider, prop propagation.TextMapPropagator) *Client {
	return &Client{t: newTracer(tp, prop, trace.SpanKindClient)}
}

// Start starts the client span of a call of fullMethod and returns ctx
// with the span, and the metadata that carries its context to the server
// (key, value, key, value, ...; keys in lower case), which the caller
// sends with the call's own, in their place if they have the same keys.
func (c *Client) Start(ctx context.Context, fullMethod string) (context.Context, trace.Span, []string) {
	m := c.t.method(fullMethod)
	ctx, span := c.t.tracer.Start(ctx, m.name, m.opts...)
	var kv injected
	c.t.prop.Inject(ctx, &kv)
	return ctx, span, kv
}

// Peer records the server the call went to on span (server.address and
// server.port), as otelgrpc does from the connection's remote address.
func Peer(span trace.Span, remote net.Addr) {
	if remote != nil && span.IsRecording() {
		span.SetAttributes(serverAddrAttrs(remote)...)
	}
}

// EndClient records a client call's outcome on its span and ends it; err
// is the call's error, nil or io.EOF for OK.
func EndClient(span trace.Span, err error) {
	if err == io.EOF {
		err = nil
	}
	end(span, err, clientStatus)
}

// incoming reads a context's incoming metadata for a propagator, a key
// at a time, without copying the whole of it.
type incoming struct{ ctx context.Context }

func (c incoming) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (incoming) Set(string, string) {} // a server only reads

func (c incoming) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// injected collects what a propagator injects, as metadata key-value
// pairs (keys in lower case, as metadata keys are).
type injected []string

func (kv *injected) Get(string) string { return "" }
func (kv *injected) Set(key, value string) {
	*kv = append(*kv, strings.ToLower(key), value)
}
func (kv *injected) Keys() []string { return nil }
