//go:build unix

package main

import (
	"os"
	"syscall"
)

// execBench replaces calc with the program at path, run with args, so that
// signals reach it and its exit status is calc's. It returns only if the
// exec fails.
func execBench(path string, args []string) (int, error) {
	return 0, syscall.Exec(path, append([]string{benchProgram}, args...), os.Environ())
}
