//go:build !unix

package bench

import (
	"errors"
	"time"
)

// SelfCPU returns this process's user plus system CPU time; it is
// implemented on Unix only.
func SelfCPU() (time.Duration, error) {
	return 0, errors.New("bench: process CPU time is measured on Unix only")
}

// RaiseFileLimit raises the open-file limit to n; it is implemented on Unix
// only.
func RaiseFileLimit(uint64) error {
	return errors.New("bench: raising the open-file limit is implemented on Unix only")
}
