package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
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
	budget   *Budget // shared by a server's Readers; nil means none
	held     int     // bytes of budget held by the last large frame
	buf      *[]byte // pooled; nil while released
	start    int     // first unread byte in *buf
	end      int     // end of buffered bytes in *buf
	err      error   // sticky error from src, returned once buffered bytes run out
}

// Budget is a count of bytes that many Readers share for frames too large
// for their pooled buffer: a server gives all its connections one Budget,
// so that many connections each trickling a large frame cannot together
// hold more than the budget's memory. A Reader takes from the budget as a
// large frame's bytes arrive (never on the strength of a length prefix
// alone) and gives it back when the frame is consumed. It is safe for
// concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a Budget of limit bytes.
func NewBudget(limit int) *Budget { return &Budget{limit: int64(limit)} }

// InUse returns the bytes currently taken from b.
func (b *Budget) InUse() int { return int(b.used.Load()) }

// take takes n bytes from b, or reports false and takes nothing.
func (b *Budget) take(n int) bool {
	if b.used.Add(int64(n)) > b.limit {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// give returns n bytes to b.
func (b *Budget) give(n int) { b.used.Add(-int64(n)) }

// SetBudget makes r take the memory of frames larger than ReadBufferSize
// from b; when b cannot cover the next bytes of such a frame, ReadFrame
// fails with ErrBudgetExhausted.
func (r *Reader) SetBudget(b *Budget) { r.budget = b }

// releaseHeld gives back the budget the last large frame held: its bytes
// are no longer the caller's.
func (r *Reader) releaseHeld() {
	if r.held > 0 {
		r.budget.give(r.held)
		r.held = 0
	}
}

// NewReader returns a Reader of src that rejects frames whose length prefix
// exceeds maxFrameSize (DefaultMaxFrameSize if zero or negative).
func NewReader(src io.Reader, maxFrameSize int) *Reader {
	if maxFrameSize <= 0 {
		maxFrameSize = DefaultMaxFrameSize
	}
	return &Reader{src: src, maxFrame: maxFrameSize}
}

// Reset makes r a Reader of src, as new, keeping its frame limit and its
// budget: a server lends one Reader to each connection while it reads and
// takes it back while the connection is idle. Call it only when nothing is
// buffered (after Release); frames returned earlier become invalid.
func (r *Reader) Reset(src io.Reader) {
	r.Release()
	*r = Reader{src: src, maxFrame: r.maxFrame, budget: r.budget}
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
	r.releaseHeld()
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
	r.releaseHeld()
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
	r.releaseHeld()
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
// buffer, growing its own buffer only as bytes arrive, and taking each
// growth from the budget first.
func (r *Reader) readLarge(total int) ([]byte, error) {
	size := min(total, max(2*ReadBufferSize, r.Buffered()))
	if !r.hold(size) {
		return nil, fmt.Errorf("%w: a %d-byte frame", ErrBudgetExhausted, total)
	}
	dst := make([]byte, r.Buffered(), size)
	copy(dst, (*r.buf)[r.start:r.end])
	r.start, r.end = 0, 0
	for empty := 0; len(dst) < total; {
		if r.err != nil {
			r.releaseHeld()
			if errors.Is(r.err, io.EOF) {
				return nil, fmt.Errorf("%w: stream ended %d bytes into a %d-byte frame", ErrTruncated, len(dst), total)
			}
			return nil, r.err
		}
		if len(dst) == cap(dst) {
			grow := min(cap(dst), total-len(dst))
			if !r.hold(grow) {
				r.releaseHeld()
				return nil, fmt.Errorf("%w: a %d-byte frame, %d bytes in", ErrBudgetExhausted, total, len(dst))
			}
			dst = append(make([]byte, 0, cap(dst)+grow), dst...)
		}
		m, err := r.src.Read(dst[len(dst):min(cap(dst), total)])
		dst = dst[:len(dst)+m]
		r.noteRead(m, err, &empty)
	}
	return dst, nil
}

// hold takes n bytes from the budget for the frame being read, if r has a
// budget, and reports whether it could.
func (r *Reader) hold(n int) bool {
	if r.budget == nil {
		return true
	}
	if !r.budget.take(n) {
		return false
	}
	r.held += n
	return true
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
