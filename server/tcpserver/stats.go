package tcpserver

import (
	"sync/atomic"

	"google.golang.org/grpc/codes"
)

// Stats is a snapshot of a Server's connections, streams and counters, for
// a metrics collector to read when it is scraped. Counters only grow;
// every label set is bounded (no peer addresses).
type Stats struct {
	// ConnectionsOpen counts admitted connections not yet closed, those in
	// the handshake included.
	ConnectionsOpen int
	// ConnectionsHandshaking counts connections that have not yet sent
	// their preface.
	ConnectionsHandshaking int
	// ConnectionsIdle counts idle connections held with no goroutine. Only
	// Linux parks connections; elsewhere it is always 0.
	ConnectionsIdle int
	// StreamsOpen counts the streaming calls open on the server.
	StreamsOpen int
	// BytesReceived and BytesSent count the bytes read from and written to
	// every connection's socket; with TLS, the protocol's bytes inside it.
	BytesReceived, BytesSent uint64
	// ConnectionsRefused counts connections closed before serving a call,
	// by reason: "per_addr" (MaxConnectionsPerAddr), "max_connections"
	// (MaxConnections), "handshake_evicted" (cut off at MaxHandshakes for
	// a newer connection), "handshake_timeout" (no preface within
	// HandshakeTimeout, the TLS handshake's included), "bad_preface" (not
	// calc's protocol, HTTP included), "unsupported_version", and with TLS
	// "tls_handshake" (a TLS handshake that failed: not TLS, an unknown or
	// missing client certificate, no common protocol version) and "alpn"
	// (a client that did not ask for ALPN calc/1).
	ConnectionsRefused map[string]uint64
	// FrameBudgetExhausted counts connections closed because a large frame
	// found MaxPendingFrameBytes spent.
	FrameBudgetExhausted uint64
	// CallsRefused counts streams refused with RESOURCE_EXHAUSTED, by
	// limit: "streams_per_conn" (MaxConcurrentStreams) and "max_streams"
	// (MaxStreams).
	CallsRefused map[string]uint64
	// GoAwaysSent counts the GOAWAY frames sent, by their status code; OK
	// is a drain or an idle timeout.
	GoAwaysSent map[codes.Code]uint64
}

// refusal is a reason a connection was refused (Stats.ConnectionsRefused).
type refusal int

const (
	refusedPerAddr refusal = iota
	refusedMaxConnections
	refusedHandshakeEvicted
	refusedHandshakeTimeout
	refusedBadPreface
	refusedUnsupportedVersion
	refusedTLSHandshake
	refusedALPN
	numRefusals
)

// refusalNames are the refusals' label values, by refusal.
var refusalNames = [numRefusals]string{"per_addr", "max_connections", "handshake_evicted", "handshake_timeout", "bad_preface", "unsupported_version", "tls_handshake", "alpn"}

// streamRefusal is the limit a refused stream hit (Stats.CallsRefused).
type streamRefusal int

const (
	refusedStreamsPerConn streamRefusal = iota
	refusedMaxStreams
	numStreamRefusals
)

// streamRefusalNames are the stream refusals' label values.
var streamRefusalNames = [numStreamRefusals]string{"streams_per_conn", "max_streams"}

// numCodes is the number of gRPC status codes, OK through Unauthenticated.
const numCodes = int(codes.Unauthenticated) + 1

// counters are a Server's counters: atomic adds only, on paths that already
// make a system call or refuse work, so that counting costs next to nothing.
type counters struct {
	bytesIn, bytesOut atomic.Uint64
	refused           [numRefusals]atomic.Uint64
	frameBudget       atomic.Uint64
	streamsRefused    [numStreamRefusals]atomic.Uint64
	goAways           [numCodes]atomic.Uint64
}

// goAwaySent counts a GOAWAY with code.
func (n *counters) goAwaySent(code codes.Code) {
	if int(code) < numCodes {
		n.goAways[code].Add(1)
	}
}

// Stats returns a snapshot of the server's connections, streams and
// counters. It is meant for a metrics scrape: it takes the server's lock
// briefly and allocates the snapshot's maps.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{
		ConnectionsOpen:        len(s.admission.conns),
		ConnectionsHandshaking: len(s.admission.handshaking),
	}
	s.mu.Unlock()
	st.ConnectionsIdle = s.idle.parked()
	st.StreamsOpen = int(s.streams.Load())
	n := &s.counters
	st.BytesReceived, st.BytesSent = n.bytesIn.Load(), n.bytesOut.Load()
	st.FrameBudgetExhausted = n.frameBudget.Load()
	st.ConnectionsRefused = make(map[string]uint64, numRefusals)
	for i, name := range refusalNames {
		st.ConnectionsRefused[name] = n.refused[i].Load()
	}
	st.CallsRefused = make(map[string]uint64, numStreamRefusals)
	for i, name := range streamRefusalNames {
		st.CallsRefused[name] = n.streamsRefused[i].Load()
	}
	st.GoAwaysSent = map[codes.Code]uint64{}
	for i := range n.goAways {
		if v := n.goAways[i].Load(); v > 0 {
			st.GoAwaysSent[codes.Code(i)] = v
		}
	}
	return st
}
