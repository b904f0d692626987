//go:build !linux

package bench

import "syscall"

// bindAddressNoPort is nil where IP_BIND_ADDRESS_NO_PORT does not exist:
// the dialer binds its source address and port as usual.
var bindAddressNoPort func(network, address string, c syscall.RawConn) error
