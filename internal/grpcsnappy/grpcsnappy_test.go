package grpcsnappy_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"google.golang.org/grpc/encoding"

	"github.com/calcrpc/calc/internal/grpcsnappy"
)

func TestRoundTripIsOneBlock(t *testing.T) {
	c := encoding.GetCompressor(grpcsnappy.Name)
	if c == nil {
		t.Fatal("snappy compressor not registered")
	}
	msg := []byte(strings.Repeat("2 * (3 + 4) - 10 / 4 + ", 100))
	var wire bytes.Buffer
	w, err := c.Compress(&wire)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(msg[:100]) // written in pieces, sent as one block
	_, _ = w.Write(msg[100:])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if block, err := snappy.Decode(nil, wire.Bytes()); err != nil || !bytes.Equal(block, msg) {
		t.Fatalf("the payload is not one snappy block of the message: %v", err)
	}
	r, err := c.Decompress(bytes.NewReader(wire.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); !bytes.Equal(got, msg) {
		t.Fatal("round trip changed the message")
	}
}

func TestDecompressRejects(t *testing.T) {
	c := encoding.GetCompressor(grpcsnappy.Name)
	for name, in := range map[string][]byte{
		"bomb": {0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x61}, // claims 1 GiB
		// 23 bytes claiming 4 MiB, within MaxDecodedLen but far past what
		// snappy can encode in 23 bytes: rejected before decoding.
		"ratio":   append([]byte{0x80, 0x80, 0x80, 0x02}, bytes.Repeat([]byte{0xfe, 0xff, 0xff}, 6)...),
		"corrupt": {0x0a, 0xff, 0xff, 0xff},
		"varint":  {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		if _, err := c.Decompress(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
