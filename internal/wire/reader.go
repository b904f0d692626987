package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ReadBufferSize is the size of the pooled buffer a Reader borrows while
// bytes are arriving. Frames that fit are read in place, many per read call;
// larger frames get a buffer of their own that grows only as their bytes
// actually arrive, so a length prefix alone never makes a Reader allocate.
const ReadBufferSize = 16 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, ReadBufferSize); return &b }}

// Reader reads frames from an io.Reader. It is not safe for concurrent use.
type Reader struct {
	src      io.Reader
	maxFrame int
	buf      *[]byte // pooled; nil while released
	start    int     // first unread byte in *buf
	end      int     // end of buffered bytes in *buf
	err      error   // sticky error from src, returned once buffered bytes run out
}

// NewReader returns a Reader of src that rejects frames whose length prefix
// exceeds maxFrameSize (DefaultMaxFrameSize if zero or negative).
func NewReader(src io.Reader, maxFrameSize int) *Reader {
	if maxFrameSize <= 0 {
		maxFrameSize = DefaultMaxFrameSize
	}
	return &Reader{src: src, maxFrame: maxFrameSize}
}

// Buffered returns the number of bytes read from the source but not yet
// returned as frames.
func (r *Reader) Buffered() int { return r.end - r.start }

// HasFrame reports whether a whole frame is buffered, so that the next
// ReadFrame will not read from the source.
func (r *Reader) HasFrame() bool {
	n := r.Buffered()
	return n >= LengthSize && n-LengthSize >= int(binary.BigEndian.Uint32((*r.buf)[r.start:]))
}

// Release returns the Reader's buffer to the pool if no bytes are buffered.
// A server calls it before waiting for the next burst of bytes, so an idle
// connection holds no read buffer. Frames returned earlier become invalid.
func (r *Reader) Release() {
	if r.buf != nil && r.Buffered() == 0 {
		readBufPool.Put(r.buf)
		r.buf, r.start, r.end = nil, 0, 0
	}
}

// Fill reads once from the source into the buffer, taking a pooled buffer
// if the Reader has none: a server waiting for a connection's next burst
// calls it under a short read deadline. A timeout (an error with a
// Timeout() bool method that reports true) that came with no bytes leaves
// the Reader as it was, so the caller may wait again or Release; any other
// error is the Reader's from then on.
func (r *Reader) Fill() error {
	if r.err != nil {
		return r.endErr()
	}
	if r.buf == nil {
		r.buf = readBufPool.Get().(*[]byte)
	}
	b := *r.buf
	if r.end == len(b) {
		if r.start == 0 {
			return nil // full
		}
		r.end = copy(b, b[r.start:r.end])
		r.start = 0
	}
	m, err := r.src.Read(b[r.end:])
	r.end += m
	if m == 0 && err != nil && isTimeout(err) {
		return err
	}
	if err != nil {
		r.err = err
		if m == 0 {
			return r.endErr()
		}
	}
	return nil
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// ReadPreface reads the client's connection preface and returns its version.
// It reads exactly PrefaceSize bytes, failing with ErrBadMagic as soon as the
// first four bytes are not Magic; the bytes read are returned either way so a
// server can recognise what a stray client sent.
func ReadPreface(src io.Reader) (version byte, got []byte, err error) {
	var p [PrefaceSize]byte
	n, err := io.ReadFull(src, p[:len(Magic)])
	if err != nil {
		return 0, p[:n], err
	}
	if string(p[:len(Magic)]) != Magic {
		return 0, p[:len(Magic)], ErrBadMagic
	}
	if _, err := io.ReadFull(src, p[len(Magic):]); err != nil {
		return 0, p[:len(Magic)], err
	}
	return p[len(Magic)], p[:], nil
}

// ReadFrame reads the next frame. At a clean end of stream between frames it
// returns io.EOF; a stream that ends inside a frame gives ErrTruncated. A
// length prefix above the max frame size gives ErrFrameTooLarge before any
// payload byte is read, and a kind this package does not know gives
// ErrUnknownKind, with the frame consumed.
func (r *Reader) ReadFrame() (Frame, error) {
	if err := r.fill(LengthSize); err != nil {
		return Frame{}, err
	}
	b := *r.buf
	n := binary.BigEndian.Uint32(b[r.start:])
	if n > uint32(r.maxFrame) {
		return Frame{}, fmt.Errorf("%w: %d > %d", ErrFrameTooLarge, n, r.maxFrame)
	}
	if n < HeaderSize {
		return Frame{}, fmt.Errorf("%w: %d", ErrFrameTooSmall, n)
	}
	total := LengthSize + int(n)
	var raw []byte
	if total <= len(b) {
		if err := r.fill(total); err != nil {
			return Frame{}, err
		}
		b = *r.buf
		raw = b[r.start : r.start+total]
		r.start += total
	} else {
		var err error
		if raw, err = r.readLarge(total); err != nil {
			return Frame{}, err
		}
	}
	f := Frame{
		Kind:    Kind(raw[4]),
		Flags:   Flags(raw[5]),
		ID:      binary.BigEndian.Uint32(raw[6:]),
		Payload: raw[FrameOverhead:],
	}
	if !f.Kind.Known() {
		return f, fmt.Errorf("%w %s", ErrUnknownKind, f.Kind)
	}
	return f, nil
}

// fill ensures at least n bytes are buffered, n <= ReadBufferSize.
func (r *Reader) fill(n int) error {
	if r.buf == nil {
		r.buf = readBufPool.Get().(*[]byte)
	}
	b := *r.buf
	if r.start+n > len(b) { // not enough room after start: move the tail down
		r.end = copy(b, b[r.start:r.end])
		r.start = 0
	}
	for empty := 0; r.end-r.start < n; {
		if r.err != nil {
			return r.endErr()
		}
		m, err := r.src.Read(b[r.end:])
		r.end += m
		r.noteRead(m, err, &empty)
	}
	return nil
}

// endErr returns the error to report when the source has failed: io.EOF
// between frames, ErrTruncated inside one, or the source's own error.
func (r *Reader) endErr() error {
	if errors.Is(r.err, io.EOF) {
		if r.Buffered() == 0 {
			return io.EOF
		}
		return fmt.Errorf("%w: stream ended %d bytes into a frame", ErrTruncated, r.Buffered())
	}
	return r.err
}

// readLarge reads a frame of total bytes that does not fit the pooled
// buffer, growing its own buffer only as bytes arrive.
func (r *Reader) readLarge(total int) ([]byte, error) {
	dst := make([]byte, r.Buffered(), min(total, max(2*ReadBufferSize, r.Buffered())))
	copy(dst, (*r.buf)[r.start:r.end])
	r.start, r.end = 0, 0
	for empty := 0; len(dst) < total; {
		if r.err != nil {
			if errors.Is(r.err, io.EOF) {
				return nil, fmt.Errorf("%w: stream ended %d bytes into a %d-byte frame", ErrTruncated, len(dst), total)
			}
			return nil, r.err
		}
		if len(dst) == cap(dst) {
			dst = append(dst, make([]byte, min(cap(dst), total-len(dst)))...)[:len(dst)]
		}
		m, err := r.src.Read(dst[len(dst):min(cap(dst), total)])
		dst = dst[:len(dst)+m]
		r.noteRead(m, err, &empty)
	}
	return dst, nil
}

// noteRead records a read's error, and io.ErrNoProgress after 100
// consecutive reads that returned neither bytes nor an error.
func (r *Reader) noteRead(n int, err error, empty *int) {
	switch {
	case err != nil:
		r.err = err
	case n > 0:
		*empty = 0
	default:
		if *empty++; *empty >= 100 {
			r.err = io.ErrNoProgress
		}
	}
}
