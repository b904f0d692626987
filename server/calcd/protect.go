package calcd

import (
	"net"
	"strings"
)

// Loopback reports whether a listen address (HOST:PORT) can be reached
// only from this machine: its host is "localhost" or a loopback IP
// address. An empty host, an unspecified address (0.0.0.0, ::), any other
// IP address or host name, and an address that does not parse are
// reachable from the network, as far as protected mode is concerned.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
