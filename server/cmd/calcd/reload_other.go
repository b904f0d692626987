//go:build !unix

package main

import "os"

// notifyReload does nothing where there is no SIGHUP: files are reloaded
// when they change.
func notifyReload(chan<- os.Signal) {}
