//go:build unix

package bench

import (
	"fmt"
	"syscall"
	"time"
)

// SelfCPU returns this process's user plus system CPU time.
func SelfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// RaiseFileLimit raises this process's soft RLIMIT_NOFILE to the hard limit
// if it is below n, failing if the hard limit is below n too.
func RaiseFileLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if uint64(lim.Cur) >= n {
		return nil
	}
	if uint64(lim.Max) < n {
		return fmt.Errorf("bench: need %d open files but the hard RLIMIT_NOFILE is %d (raise it: ulimit -Hn as root)", n, lim.Max)
	}
	lim.Cur = lim.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
