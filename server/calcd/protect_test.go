package calcd_test

import (
	"testing"

	"github.com/calcrpc/calc/server/calcd"
)

func TestLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:4000", true},
		{"127.0.0.2:4000", true},
		{"[::1]:4000", true},
		{"[::1%lo]:4000", true},
		{"localhost:4000", true},
		{"LOCALHOST.:0", true},
		{"[::ffff:127.0.0.1]:4000", true},
		{":4000", false},
		{"0.0.0.0:0", false},
		{"[::]:4000", false},
		{"192.168.1.10:4000", false},
		{"10.0.0.1:4000", false},
		{"example.com:4000", false},
		{"localhost.example.com:4000", false},
		{"127.0.0.1", false}, // no port: Listen will fail anyway
	} {
		if got := calcd.Loopback(tc.addr); got != tc.want {
			t.Errorf("Loopback(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
