// Package endpoint holds what calc's transport endpoints share, so that
// each of them (server/tcpserver, server/grpcserver, server/httpserver)
// speaks of it in the same words: the error Serve returns after Shutdown,
// the key by which per-peer limits count a connection, and the listener
// that enforces those limits for the HTTP-based endpoints.
package endpoint

import (
	"errors"
	"net"
)

// ErrServerClosed is returned by every endpoint's Serve after Shutdown, as
// http.ErrServerClosed is by net/http's.
var ErrServerClosed = errors.New("calc: server closed")

// PeerKey returns the key that per-address connection limits count addr
// under: its IP address without the port, or addr's string for addresses
// that are not TCP or UDP (a pipe, a Unix socket).
func PeerKey(addr net.Addr) string {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UDPAddr:
		return a.IP.String()
	case nil:
		return ""
	}
	return addr.String()
}
