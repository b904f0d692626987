package httpserver

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"github.com/golang/snappy"

	"github.com/calcrpc/calc/internal/grpcsnappy"
	"github.com/calcrpc/calc/internal/wire"
)

// compression returns the transcoder options for the request encodings
// the gRPC port accepts, each refusing to decompress a message past limit
// bytes (RESOURCE_EXHAUSTED), as the gRPC port's do: vanguard decompresses
// a request it must transcode (JSON to binary, REST) whole into memory,
// and its own gzip reader has no bound, so a small gzip body could make it
// allocate gigabytes.
//
//   - gzip, as vanguard offers it, with the bound;
//   - snappy, one snappy block per message (internal/grpcsnappy's format),
//     whose decoded length is checked before anything is decoded.
func compression(limit int) []vanguard.TranscoderOption {
	return []vanguard.TranscoderOption{
		vanguard.WithCompression(vanguard.CompressionGzip,
			func() connect.Compressor { return gzip.NewWriter(io.Discard) },
			func() connect.Decompressor { return &gzipReader{limit: int64(limit)} }),
		vanguard.WithCompression(grpcsnappy.Name,
			func() connect.Compressor { return new(snappyWriter) },
			func() connect.Decompressor { return &snappyReader{limit: limit} }),
	}
}

// tooLarge is the error a decompressor returns past its limit.
func tooLarge(limit int64) error {
	return connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("the decompressed request message is over the limit of %d bytes", limit))
}

// gzipReader is gzip.Reader that fails once it has decompressed more than
// limit bytes.
type gzipReader struct {
	gzip.Reader
	limit, n int64
}

func (z *gzipReader) Reset(r io.Reader) error {
	z.n = 0
	return z.Reader.Reset(r)
}

func (z *gzipReader) Read(p []byte) (int, error) {
	if int64(len(p)) > z.limit+1-z.n {
		p = p[:z.limit+1-z.n]
	}
	n, err := z.Reader.Read(p)
	if z.n += int64(n); z.n > z.limit {
		return 0, tooLarge(z.limit)
	}
	return n, err
}

// snappyWriter buffers a message and writes it as one snappy block on
// Close.
type snappyWriter struct {
	dst io.Writer
	buf []byte
}

func (w *snappyWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *snappyWriter) Close() error {
	_, err := w.dst.Write(snappy.Encode(nil, w.buf))
	w.buf = w.buf[:0]
	return err
}

func (w *snappyWriter) Reset(dst io.Writer) {
	w.dst, w.buf = dst, w.buf[:0]
}

// snappyReader decodes one snappy block, checked first (wire.CheckSnappy)
// against limit and against a decompression bomb's ratio.
type snappyReader struct {
	limit int
	out   bytes.Reader
}

func (s *snappyReader) Reset(r io.Reader) error {
	block, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	n, err := wire.CheckSnappy(block, s.limit)
	if err != nil {
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("snappy: %w", err))
	}
	out, err := snappy.Decode(make([]byte, n), block)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("snappy: %w", err))
	}
	s.out.Reset(out)
	return nil
}

func (s *snappyReader) Read(p []byte) (int, error) { return s.out.Read(p) }

func (s *snappyReader) Close() error { return nil }
