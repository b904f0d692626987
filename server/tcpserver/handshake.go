package tcpserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/calcrpc/calc/internal/wire"
)

// handshake runs the TLS handshake (with Options.TLSConfig, tls.go),
// reads the preface, takes the connection past admission's handshake stage
// and sends SETTINGS; or it answers a stray client, or refuses one past
// MaxConnections, and reports false. The read deadline was set by admit.
func (c *conn) handshake() bool {
	if !c.tlsHandshake() {
		return false
	}
	version, got, err := wire.ReadPreface(connReader{c})
	switch {
	case errors.Is(err, wire.ErrBadMagic):
		c.srv.counters.refused[refusedBadPreface].Add(1)
		if looksLikeHTTP(got) {
			c.refuseHTTP()
		}
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.srv.handshakeTimedOut(c)
		return false
	case err != nil:
		return false
	case version != wire.Version:
		c.srv.counters.refused[refusedUnsupportedVersion].Add(1)
		c.goAway(codes.FailedPrecondition, fmt.Sprintf("unsupported protocol version %d; this server speaks version %d", version, wire.Version))
		return false
	}
	if ok, reason := c.srv.establish(c); !ok {
		if reason != "" {
			c.goAway(codes.ResourceExhausted, reason)
		}
		return false
	}
	c.out.Send(func(b []byte) []byte { return append(b, c.srv.settings...) })
	c.startAgeing()
	c.servedFrames = true // the first request is awaited like the next burst
	return true
}

// httpRefusal is what an HTTP client that dialled the raw TCP port reads.
const httpRefusal = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 89\r\n\r\n" +
	"This port speaks calc's raw TCP protocol (PROTOCOL.md); HTTP/2 gRPC is on the gRPC port.\n"

// refuseHTTP answers an HTTP client with a 400 and closes gracefully: the
// write side first, then after discarding what the client still sends
// (briefly), so the kernel does not reset the connection before the client
// has read the answer.
func (c *conn) refuseHTTP() {
	_ = c.nc.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c.nc, httpRefusal); err != nil {
		return
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, 64<<10))
	}
}

// looksLikeHTTP reports whether the first bytes of a connection start an
// HTTP/1 request or the HTTP/2 preface.
func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC", "CONN", "TRAC", "PRI "} {
		if bytes.HasPrefix(b, []byte(m)) {
			return true
		}
	}
	return false
}
