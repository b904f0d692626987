package main

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/golang/snappy"
)

// TestSnappyRequests checks the hand-made snappy blocks of snappy.pcap with
// a real decoder: each must decode to the same EvaluateRequest.
func TestSnappyRequests(t *testing.T) {
	expr := strings.Repeat("1 + ", 25) + "1"
	want := append([]byte{0x0a, byte(len(expr))}, expr...)
	frames := snappyRequests()
	if len(frames) != 3 {
		t.Fatalf("got %d frames, want 3", len(frames))
	}
	for i, f := range frames {
		if got := binary.BigEndian.Uint32(f); int(got) != len(f)-4 {
			t.Errorf("frame %d: length prefix %d, frame of %d bytes", i, got, len(f))
		}
		payload := f[10:]
		if i == 0 {
			payload = payload[2+payload[1]:] // ref 1, then the method name
		} else {
			payload = payload[1:] // ref 1
		}
		got, err := snappy.Decode(nil, payload)
		if err != nil {
			t.Errorf("frame %d: %v", i, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("frame %d decodes to %q, want %q", i, got, want)
		}
	}
}
