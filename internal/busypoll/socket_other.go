//go:build !unix

package busypoll

import "net"

// NewSocket returns nil: polling is implemented for Unix sockets only.
func NewSocket(net.Conn) Socket { return nil }
