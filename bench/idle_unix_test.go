//go:build unix

package bench

import (
	"net"
	"testing"
	"time"
)

// TestCountClosed: a connection whose peer closed counts as closed; one
// open and quiet, or with bytes waiting, does not.
func TestCountClosed(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var clients, servers []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := lis.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		clients, servers = append(clients, c), append(servers, s)
	}
	servers[0].Close()
	if _, err := servers[1].Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := countClosed(append(clients, nil))
		if got == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("countClosed = %d, want 1", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
