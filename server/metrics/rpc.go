package metrics

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// RPCMetrics are the per-RPC metrics of one transport, with
// go-grpc-middleware's names, help, labels and counting rules (see the
// package doc), built for the raw TCP server's hot path: each method's
// series are looked up once and kept, so a call costs a map lookup and a
// few atomic adds, where the library's reporter resolves five label sets
// per call. Both register in one registry, told apart by their transport
// label; TestSameAsGoGRPCMiddleware holds them to the same output.
type RPCMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	seconds                          *prometheus.HistogramVec
	methods                          sync.Map // full method name → *methodSeries
	// last is the series looked up last: a server that mostly serves one
	// method finds it with a string comparison (the same string each call,
	// so its bytes are not even read), not a hash.
	last atomic.Pointer[methodSeries]
}

// NewRPCMetrics returns the per-RPC metrics of one transport, labelled
// transport=transport.
func NewRPCMetrics(transport string) *RPCMetrics {
	labels := prometheus.Labels{"transport": transport}
	base := []string{"grpc_type", "grpc_service", "grpc_method"}
	counter := func(name, help string, names []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, names)
	}
	return &RPCMetrics{
		started:  counter("grpc_server_started_total", "Total number of RPCs started on the server.", base),
		handled:  counter("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure.", append(base[:3:3], "grpc_code")),
		received: counter("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", base),
		sent:     counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", base),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "grpc_server_handling_seconds",
			Help:        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			ConstLabels: labels,
			Buckets:     HandlingBuckets,
		}, base),
	}
}

// Describe implements prometheus.Collector.
func (m *RPCMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *RPCMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *RPCMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.started, m.handled, m.received, m.sent, m.seconds}
}

// methodSeries are one method's series, each resolved on its first use,
// so that a series appears when it first counts something, as
// go-grpc-middleware's do.
type methodSeries struct {
	fullMethod              string
	labels                  []string // grpc_type, grpc_service, grpc_method
	started, received, sent lazy[prometheus.Counter]
	seconds                 lazy[prometheus.Observer]
	handled                 [17]lazy[prometheus.Counter] // by status code
	m                       *RPCMetrics
}

// lazy is a series resolved on first use and kept.
type lazy[T any] struct{ p atomic.Pointer[T] }

func (l *lazy[T]) get(resolve func() T) T {
	if p := l.p.Load(); p != nil {
		return *p
	}
	v := resolve()
	l.p.Store(&v)
	return v
}

// series returns the series of a method of type typ ("unary",
// "client_stream", "server_stream" or "bidi_stream").
func (m *RPCMetrics) series(fullMethod, typ string) *methodSeries {
	if s := m.last.Load(); s != nil && s.fullMethod == fullMethod {
		return s
	}
	s, ok := m.methods.Load(fullMethod)
	if !ok {
		service, method := "unknown", "unknown"
		if svc, meth, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/"); ok {
			service, method = svc, meth
		}
		s, _ = m.methods.LoadOrStore(fullMethod, &methodSeries{fullMethod: fullMethod, m: m, labels: []string{typ, service, method}})
	}
	m.last.Store(s.(*methodSeries))
	return s.(*methodSeries)
}

func (s *methodSeries) inc(c *lazy[prometheus.Counter], vec *prometheus.CounterVec) {
	c.get(func() prometheus.Counter { return vec.WithLabelValues(s.labels...) }).Inc()
}

// done counts a call's end: its status code and how long it took.
func (s *methodSeries) done(err error, start time.Time) {
	code := status.Code(err)
	handled := func() prometheus.Counter {
		return s.m.handled.WithLabelValues(append(s.labels[:3:3], code.String())...)
	}
	if int(code) < len(s.handled) {
		s.handled[code].get(handled).Inc()
	} else {
		handled().Inc()
	}
	s.seconds.get(func() prometheus.Observer { return s.m.seconds.WithLabelValues(s.labels...) }).Observe(time.Since(start).Seconds())
}

// UnaryServerInterceptor counts unary calls as go-grpc-middleware does:
// started, the request received, the response sent when there is one,
// handled by code, and the handling time.
func (m *RPCMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		s := m.series(info.FullMethod, "unary")
		s.inc(&s.started, m.started)
		s.inc(&s.received, m.received)
		resp, err := handler(ctx, req)
		if err == nil {
			s.inc(&s.sent, m.sent)
		}
		s.done(err, start)
		return resp, err
	}
}

// StreamServerInterceptor counts streams as go-grpc-middleware does:
// started, every message received and sent, handled by code, and the
// handling time.
func (m *RPCMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		typ := "bidi_stream"
		switch {
		case info.IsClientStream && !info.IsServerStream:
			typ = "client_stream"
		case !info.IsClientStream && info.IsServerStream:
			typ = "server_stream"
		}
		s := m.series(info.FullMethod, typ)
		s.inc(&s.started, m.started)
		err := handler(srv, &countedStream{ServerStream: ss, s: s})
		s.done(err, start)
		return err
	}
}

// countedStream counts a stream's messages.
type countedStream struct {
	grpc.ServerStream
	s *methodSeries
}

func (c *countedStream) SendMsg(m any) error {
	err := c.ServerStream.SendMsg(m)
	if err == nil {
		c.s.inc(&c.s.sent, c.s.m.sent)
	}
	return err
}

func (c *countedStream) RecvMsg(m any) error {
	err := c.ServerStream.RecvMsg(m)
	if err == nil {
		c.s.inc(&c.s.received, c.s.m.received)
	}
	return err
}
