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
// The raw TCP server's own figures are named calc_tcp_*; see
// NewTCPCollector.
package metrics

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

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

// The raw TCP server's metrics.
var (
	tcpOpen = prometheus.NewDesc("calc_tcp_connections_open",
		"Raw TCP connections open, those in the handshake included.", nil, nil)
	tcpHandshaking = prometheus.NewDesc("calc_tcp_connections_handshaking",
		"Raw TCP connections that have not yet sent their preface.", nil, nil)
	tcpIdle = prometheus.NewDesc("calc_tcp_connections_idle",
		"Idle raw TCP connections held with no goroutine (Linux only; 0 elsewhere).", nil, nil)
	tcpStreams = prometheus.NewDesc("calc_tcp_streams_open",
		"Streaming calls open on the raw TCP server.", nil, nil)
	tcpReceived = prometheus.NewDesc("calc_tcp_received_bytes_total",
		"Bytes read from raw TCP sockets.", nil, nil)
	tcpSent = prometheus.NewDesc("calc_tcp_sent_bytes_total",
		"Bytes written to raw TCP sockets.", nil, nil)
	tcpRefused = prometheus.NewDesc("calc_tcp_connections_refused_total",
		"Raw TCP connections closed before serving a call, by reason.", []string{"reason"}, nil)
	tcpFrameBudget = prometheus.NewDesc("calc_tcp_frame_budget_exhausted_total",
		"Raw TCP connections closed because a large frame found the pending-frame memory budget spent.", nil, nil)
	tcpCallsRefused = prometheus.NewDesc("calc_tcp_calls_refused_total",
		"Raw TCP streams refused with RESOURCE_EXHAUSTED, by the limit they hit.", []string{"reason"}, nil)
	tcpGoAways = prometheus.NewDesc("calc_tcp_goaways_sent_total",
		"GOAWAY frames sent on raw TCP connections, by status code (OK: drain or idle timeout).", []string{"code"}, nil)
)

// tcpCollector reads a raw TCP server's Stats at each scrape.
type tcpCollector struct {
	stats func() tcpserver.Stats
}

// NewTCPCollector returns a collector of the raw TCP server's figures,
// read from stats (a tcpserver.Server's Stats method) at each scrape, so
// that the server counts with atomic adds only and knows nothing of
// Prometheus. Every label value is bounded: reasons and status codes,
// never peers.
func NewTCPCollector(stats func() tcpserver.Stats) prometheus.Collector {
	return tcpCollector{stats: stats}
}

// Describe sends the descriptors of every metric Collect sends.
func (tcpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{tcpOpen, tcpHandshaking, tcpIdle, tcpStreams, tcpReceived, tcpSent, tcpRefused, tcpFrameBudget, tcpCallsRefused, tcpGoAways} {
		ch <- d
	}
}

// Collect sends the server's current figures.
func (c tcpCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(tcpOpen, st.ConnectionsOpen)
	gauge(tcpHandshaking, st.ConnectionsHandshaking)
	gauge(tcpIdle, st.ConnectionsIdle)
	gauge(tcpStreams, st.StreamsOpen)
	counter(tcpReceived, st.BytesReceived)
	counter(tcpSent, st.BytesSent)
	counter(tcpFrameBudget, st.FrameBudgetExhausted)
	for reason, n := range st.ConnectionsRefused {
		counter(tcpRefused, n, reason)
	}
	for reason, n := range st.CallsRefused {
		counter(tcpCallsRefused, n, reason)
	}
	for code, n := range st.GoAwaysSent {
		counter(tcpGoAways, n, code.String())
	}
}
