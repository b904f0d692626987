// Package metrics holds calcd's Prometheus collectors: a registry of its
// own with the Go runtime and process collectors, per-RPC collectors for
// each transport (the names every gRPC dashboard expects, plus a transport
// label: go-grpc-middleware's own for gRPC, RPCMetrics, which counts the
// same with less work per call, for raw TCP), and the raw TCP server's
// connection figures, read from tcpserver.Stats when scraped.
//
// The per-RPC collectors are interceptors, and the raw TCP server runs
// grpc-go interceptors, so one set of names covers both transports:
//
//	grpc_server_started_total{grpc_type,grpc_service,grpc_method,transport}
//	grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code,transport}
//	grpc_server_msg_received_total{grpc_type,grpc_service,grpc_method,transport}
//	grpc_server_msg_sent_total{grpc_type,grpc_service,grpc_method,transport}
//	grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method,transport} (histogram)
//
// The raw TCP protocol's own figures are named calc_tcp_*, over the raw
// TCP port (transport="tcp") and over WebSocket (transport="ws"); see
// NewTCPCollector. The HTTP port's requests refused before any gRPC
// handler are calc_http_requests_refused_total; see NewHTTPCollector.
package metrics

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"

	"github.com/calcrpc/calc/server/httpserver"
	"github.com/calcrpc/calc/server/tcpserver"
)

// NewRegistry returns a registry of its own (not prometheus's global one)
// holding the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// HandlingBuckets are the bounds, in seconds, of
// grpc_server_handling_seconds: calc's calls take microseconds, so they
// start at 50 µs where prometheus.DefBuckets start at 5 ms.
var HandlingBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewServerMetrics returns go-grpc-middleware's per-RPC collectors for one
// transport: its metric names and labels, a constant label transport with
// the given value, and the handling-time histogram (HandlingBuckets). The
// instances for several transports register together in one registry.
// Its interceptors should run outside panic recovery, so that a panic is
// counted as the INTERNAL status it becomes.
func NewServerMetrics(transport string) *grpcprom.ServerMetrics {
	labels := prometheus.Labels{"transport": transport}
	return grpcprom.NewServerMetrics(
		grpcprom.WithServerCounterOptions(grpcprom.WithConstLabels(labels)),
		grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramConstLabels(labels),
			grpcprom.WithHistogramBuckets(HandlingBuckets),
		),
	)
}

// NewReadyGauge returns the gauge calc_ready, read at each scrape: 1 while
// ready reports true (calcd's health is SERVING, /readyz answers 200), 0
// while it does not (a drain), so that an alert can tell a calcd that
// stays out of service from one that is down.
func NewReadyGauge(ready func() bool) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "calc_ready",
		Help: "1 while calcd is ready for traffic (health SERVING, /readyz 200), 0 while it drains.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	})
}

// tcpDescs are the descriptors of the raw TCP protocol's figures, with a
// constant transport label: "tcp" (the raw TCP port) or "ws" (the same
// protocol over WebSocket on the HTTP port).
type tcpDescs struct {
	open, handshaking, idle, streams, received, sent, refused, frameBudget, callsRefused, goAways *prometheus.Desc
}

func newTCPDescs(transport string) tcpDescs {
	l := prometheus.Labels{"transport": transport}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, l)
	}
	return tcpDescs{
		open:        d("calc_tcp_connections_open", "Raw TCP protocol connections open, those in the handshake included."),
		handshaking: d("calc_tcp_connections_handshaking", "Raw TCP protocol connections that have not yet sent their preface."),
		idle:        d("calc_tcp_connections_idle", "Idle raw TCP connections held with no goroutine (Linux only; 0 elsewhere, and over WebSocket)."),
		streams:     d("calc_tcp_streams_open", "Streaming calls open on the raw TCP protocol."),
		received:    d("calc_tcp_received_bytes_total", "Bytes of the raw TCP protocol received (over WebSocket: inside its messages)."),
		sent:        d("calc_tcp_sent_bytes_total", "Bytes of the raw TCP protocol sent (over WebSocket: inside its messages)."),
		refused: d("calc_tcp_connections_refused_total",
			"Raw TCP protocol connections (over WebSocket: upgrade requests) closed before serving a call, by reason.", "reason"),
		frameBudget: d("calc_tcp_frame_budget_exhausted_total",
			"Raw TCP protocol connections closed because a large frame found the pending-frame memory budget spent."),
		callsRefused: d("calc_tcp_calls_refused_total", "Raw TCP protocol streams refused with RESOURCE_EXHAUSTED, by the limit they hit.", "reason"),
		goAways: d("calc_tcp_goaways_sent_total",
			"GOAWAY frames sent on raw TCP protocol connections, by status code (OK: drain, idle timeout or connection age).", "code"),
	}
}

// tcpCollector reads a raw TCP server's Stats at each scrape.
type tcpCollector struct {
	stats func() tcpserver.Stats
	d     tcpDescs
}

// NewTCPCollector returns a collector of the figures of a server of calc's
// raw TCP protocol, read from stats (tcpserver.Server.Stats for the raw
// TCP port, wsserver.Server.Stats for /ws) at each scrape, so that the
// server counts with atomic adds only and knows nothing of Prometheus.
// Every series is named calc_tcp_* and labelled with transport ("tcp" or
// "ws"), so one query covers the protocol over both. Every label value is
// bounded: reasons and status codes, never peers; every GOAWAY code has a
// series from the start (at 0), so that rate() sees the first one.
func NewTCPCollector(transport string, stats func() tcpserver.Stats) prometheus.Collector {
	return tcpCollector{stats: stats, d: newTCPDescs(transport)}
}

// Describe sends the descriptors of every metric Collect sends.
func (c tcpCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, desc := range []*prometheus.Desc{d.open, d.handshaking, d.idle, d.streams, d.received, d.sent, d.refused, d.frameBudget, d.callsRefused, d.goAways} {
		ch <- desc
	}
}

// Collect sends the server's current figures.
func (c tcpCollector) Collect(ch chan<- prometheus.Metric) {
	st, d := c.stats(), c.d
	gauge := func(desc *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v))
	}
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(d.open, st.ConnectionsOpen)
	gauge(d.handshaking, st.ConnectionsHandshaking)
	gauge(d.idle, st.ConnectionsIdle)
	gauge(d.streams, st.StreamsOpen)
	counter(d.received, st.BytesReceived)
	counter(d.sent, st.BytesSent)
	counter(d.frameBudget, st.FrameBudgetExhausted)
	for reason, n := range st.ConnectionsRefused {
		counter(d.refused, n, reason)
	}
	for reason, n := range st.CallsRefused {
		counter(d.callsRefused, n, reason)
	}
	for code := codes.OK; code <= codes.Unauthenticated; code++ {
		counter(d.goAways, st.GoAwaysSent[code], code.String())
	}
}

var httpRefused = prometheus.NewDesc("calc_http_requests_refused_total",
	"Requests to the HTTP port's RPC routes answered with an HTTP error before reaching a gRPC handler "+
		"(so not in grpc_server_*), by HTTP status (other: the rest of 4xx and 5xx).", []string{"code"}, nil)

// httpCollector reads the HTTP endpoint's Stats at each scrape.
type httpCollector struct {
	stats func() httpserver.Stats
}

// NewHTTPCollector returns a collector of the HTTP endpoint's own figures
// (calc_http_requests_refused_total{code}), read from stats
// (httpserver.Server.Stats) at each scrape.
func NewHTTPCollector(stats func() httpserver.Stats) prometheus.Collector {
	return httpCollector{stats: stats}
}

// Describe sends the descriptors of every metric Collect sends.
func (httpCollector) Describe(ch chan<- *prometheus.Desc) { ch <- httpRefused }

// Collect sends the endpoint's current figures.
func (c httpCollector) Collect(ch chan<- prometheus.Metric) {
	for code, n := range c.stats().RequestsRefused {
		ch <- prometheus.MustNewConstMetric(httpRefused, prometheus.CounterValue, float64(n), code)
	}
}
