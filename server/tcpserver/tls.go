package tcpserver

import (
	"crypto/tls"
	"errors"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/calcrpc/calc/internal/wire"
)

// TLS (Options.TLSConfig). A connection is wrapped in tls.Server when it
// is admitted, and its TLS handshake is the first step of the handshake
// stage: it runs under the same HandshakeTimeout deadline as the preface,
// and a client stalling in it counts against MaxHandshakes, is evicted
// for a newer one and times out like a silent socket. The whole byte
// stream, preface included, then runs inside TLS.
//
// A TLS connection has no socket to wait on for readability, so between
// bursts its goroutine waits in a read (read.go, awaitReadable) and an
// idle TLS connection keeps its goroutine and a read buffer; the idle
// timeout applies as to any connection.

// serverTLS returns the configuration the server's connections use: a
// clone of cfg requiring TLS 1.3 and offering only ALPN wire.ALPN, also
// in the configuration cfg's GetConfigForClient returns for a client
// (which replaces cfg for that handshake).
func serverTLS(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	restrict := func(c *tls.Config) *tls.Config {
		c = c.Clone()
		c.MinVersion = max(c.MinVersion, tls.VersionTLS13)
		c.NextProtos = []string{wire.ALPN}
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

// tlsHandshake runs the server's TLS handshake, under the handshake
// deadline admit set, and reports whether the connection may go on to its
// preface. A client offering other application protocols than wire.ALPN
// is refused by crypto/tls with a no_application_protocol alert; one
// offering none completes the handshake and is closed. A plaintext calc
// client is told in plaintext, with GOAWAY UNAVAILABLE, that the port
// requires TLS.
func (c *conn) tlsHandshake() bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	_ = tc.SetWriteDeadline(time.Now().Add(c.srv.opts.HandshakeTimeout))
	err := tc.Handshake()
	var rec tls.RecordHeaderError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.srv.handshakeTimedOut(c)
		return false
	case errors.As(err, &rec) && rec.Conn != nil:
		c.srv.counters.refused[refusedTLSHandshake].Add(1)
		if string(rec.RecordHeader[:len(wire.Magic)]) == wire.Magic {
			c.srv.counters.goAwaySent(codes.Unavailable)
			_, _ = rec.Conn.Write(wire.AppendGoAwayFrame(nil, 0, statusProto(codes.Unavailable, "this port requires TLS (1.3, ALPN "+wire.ALPN+")")))
		}
		return false
	case err != nil:
		c.srv.counters.refused[refusedTLSHandshake].Add(1)
		c.srv.logger.Debug("TLS handshake failed", "peer", addrString(c.nc.RemoteAddr()), "error", err)
		return false
	}
	state := tc.ConnectionState()
	if state.NegotiatedProtocol != wire.ALPN {
		c.srv.counters.refused[refusedALPN].Add(1)
		return false
	}
	// Handlers see the TLS state as on the gRPC endpoint; no call has
	// started yet, so the peer is still this goroutine's alone.
	c.peerInfo().AuthInfo = credentials.TLSInfo{State: state, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	return true
}
