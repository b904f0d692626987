package tcpconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrHTTP2Server is matched (errors.Is) by the error of a Dial or NewConn
// whose server answered the preface with an HTTP/2 frame: it speaks
// HTTP/2, as a gRPC server does, not calc's raw TCP protocol, so the
// address is most likely a gRPC port. The error's code is UNAVAILABLE.
var ErrHTTP2Server = errors.New("tcpconn: the server speaks HTTP/2, not calc's raw TCP protocol")

// sniffSize is how many of the server's first bytes sniffHTTP needs: an
// HTTP/2 frame header, or "HTTP/1.1 ". It is less than any calc frame.
const sniffSize = 9

// sniffHTTP returns the error for a server at addr whose first bytes, head,
// are HTTP rather than a calc frame, or nil. An HTTP/2 server writes a
// SETTINGS frame first (RFC 9113, section 3.4) without waiting for the
// client's preface: its 9-byte header has type 0x04, flags 0 and stream 0.
// Read as a calc frame, its fifth byte would be the kind, and no calc kind
// is 0. An HTTP/1 server may answer with a response, "HTTP/1.1 400 ...".
func sniffHTTP(head []byte, addr net.Addr) error {
	switch {
	case head[3] == 0x04 && head[4] == 0 && binary.BigEndian.Uint32(head[5:9]) == 0:
		return &http2Error{status.Newf(codes.Unavailable, "tcpconn: %s speaks HTTP/2, not calc's raw TCP protocol: this looks like a gRPC port", addr)}
	case bytes.HasPrefix(head, []byte("HTTP/")):
		return status.Errorf(codes.Unavailable, "tcpconn: %s answered with an HTTP/1 response, not calc's raw TCP protocol", addr)
	}
	return nil
}

// http2Error is the failed handshake with an HTTP/2 server.
type http2Error struct{ st *status.Status }

func (e *http2Error) Error() string              { return e.st.Err().Error() }
func (e *http2Error) GRPCStatus() *status.Status { return e.st }
func (e *http2Error) Is(target error) bool       { return target == ErrHTTP2Server }
