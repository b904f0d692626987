//go:build unix

package busypoll

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestSocket checks NewSocket on a real loopback connection: not readable
// while nothing is sent, readable once bytes arrive (which it does not
// consume), and readable at the peer's close.
func TestSocket(t *testing.T) {
	client, server := pair(t)
	s := NewSocket(server)
	if s.Readable() {
		t.Fatal("Readable = true before anything was sent")
	}
	if _, err := client.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, s)
	buf := make([]byte, 2)
	if _, err := server.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v after Readable; want the bytes it found", buf, err)
	}
	if s.Readable() {
		t.Fatal("Readable = true with every byte read")
	}
	client.Close()
	waitReadable(t, s)
}

func waitReadable(t *testing.T, s Socket) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !s.Readable(); {
		if time.Now().After(deadline) {
			t.Fatal("Readable still false after 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSocketKeepsReset: a reset is readable, and the read after the check
// still reports it: the check takes nothing from the socket, not even its
// pending error (a MSG_PEEK receive would, leaving the read a plain EOF).
func TestSocketKeepsReset(t *testing.T) {
	client, server := pair(t)
	s := NewSocket(server)
	if err := client.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	client.Close() // a reset
	waitReadable(t, s)
	s.Readable()
	var b [1]byte
	if _, err := server.Read(b[:]); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after the check: %v, want ECONNRESET", err)
	}
}

// TestSocketAllocatesNothing: a check is one system call and no garbage.
func TestSocketAllocatesNothing(t *testing.T) {
	_, server := pair(t)
	s := NewSocket(server)
	if n := testing.AllocsPerRun(100, func() { s.Readable() }); n != 0 {
		t.Errorf("Readable allocates %v times", n)
	}
}

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}
