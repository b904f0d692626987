package bench

import "syscall"

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (linux/in.h).
const ipBindAddressNoPort = 24

// bindAddressNoPort is a net.Dialer Control function for a dialer with a
// LocalAddr: it makes the kernel choose the source port at connect time,
// free for the whole address pair, instead of at bind time, free for every
// destination. Without it, tens of thousands of connections from one
// source address (idle mode) exhaust the ports as soon as an earlier run's
// closed connections hold many of them in TIME_WAIT.
func bindAddressNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}
