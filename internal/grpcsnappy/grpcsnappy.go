// Package grpcsnappy registers a "snappy" compressor with grpc-go, so gRPC
// peers can send and accept messages with grpc-encoding: snappy.
//
// The format, for implementers in other languages: each compressed gRPC
// message is ONE snappy block in the raw block format (a uvarint of the
// decoded length followed by the compressed elements, as produced by
// snappy.Encode, Java's Snappy.compress or python-snappy's snappy.compress),
// NOT the snappy framing (stream) format. It is the same block format the raw
// TCP transport uses per frame.
//
// Import it for its side effect:
//
//	import _ "github.com/calcrpc/calc/internal/grpcsnappy"
package grpcsnappy

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/golang/snappy"
	"google.golang.org/grpc/encoding"

	"github.com/calcrpc/calc/internal/wire"
)

// Name is the grpc-encoding name of the compressor.
const Name = "snappy"

// MaxDecodedLen is the largest decoded message the compressor will
// decompress: a block claiming more, or more than wire.MaxSnappyRatio
// times its own size, is rejected before anything is allocated or decoded
// (wire.CheckSnappy). It matches calcd's default max receive size.
// grpc-go reports a compressor's error as INTERNAL.
const MaxDecodedLen = 4 << 20

func init() { encoding.RegisterCompressor(compressor{}) }

// compressor implements encoding.Compressor with snappy blocks.
type compressor struct{}

// Name returns Name.
func (compressor) Name() string { return Name }

// Compress returns a writer that buffers the message and writes it to w as
// one snappy block when closed.
func (compressor) Compress(w io.Writer) (io.WriteCloser, error) {
	bw := writerPool.Get().(*blockWriter)
	bw.dst = w
	return bw, nil
}

// Decompress reads the whole block from r and returns its decoded contents.
func (compressor) Decompress(r io.Reader) (io.Reader, error) {
	var in bytes.Buffer
	if _, err := in.ReadFrom(r); err != nil {
		return nil, err
	}
	n, err := wire.CheckSnappy(in.Bytes(), MaxDecodedLen)
	if err != nil {
		return nil, fmt.Errorf("grpcsnappy: %w", err)
	}
	out, err := snappy.Decode(make([]byte, n), in.Bytes())
	if err != nil {
		return nil, fmt.Errorf("grpcsnappy: %w", err)
	}
	return bytes.NewReader(out), nil
}

var writerPool = sync.Pool{New: func() any { return new(blockWriter) }}

// blockWriter collects a message and encodes it as one block on Close.
type blockWriter struct {
	dst io.Writer
	buf []byte
	enc []byte
}

func (w *blockWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *blockWriter) Close() error {
	w.enc = snappy.Encode(w.enc[:cap(w.enc)], w.buf)
	_, err := w.dst.Write(w.enc)
	w.dst, w.buf = nil, w.buf[:0]
	if cap(w.buf) <= 64<<10 {
		writerPool.Put(w)
	}
	return err
}
