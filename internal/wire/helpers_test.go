package wire_test

import "runtime"

// memAlloc returns the bytes allocated so far by the process.
func memAlloc() int {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int(m.TotalAlloc)
}
