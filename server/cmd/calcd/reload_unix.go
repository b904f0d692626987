//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyReload relays SIGHUP, the signal that reloads calcd's files, to c.
func notifyReload(c chan<- os.Signal) { signal.Notify(c, syscall.SIGHUP) }
