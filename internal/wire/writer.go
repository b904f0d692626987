package wire

import (
	"errors"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"
)

// MaxPending is how many bytes a Writer queues before senders block: the
// bound on a connection's output memory.
const MaxPending = 256 << 10

// maxPooledBuffer is the largest write buffer returned to the pool.
const maxPooledBuffer = 64 << 10

// ErrWriterClosed is returned by Send after CloseAfterFlush.
var ErrWriterClosed = errors.New("wire: writer closed")

var writeBufPool = sync.Pool{New: func() any { return new([]byte) }}

// Writer coalesces frames from many goroutines into few writes. It has no
// goroutine of its own: a sender that finds the Writer idle becomes the
// flusher and writes out everything queued, including what others append
// while it is inside the write call. An idle Writer holds no buffer. It is
// safe for concurrent use.
type Writer struct {
	dst   io.WriteCloser
	codec Codec // nil: protobuf-go

	mu       sync.Mutex
	drained  sync.Cond // broadcast after each write
	buf      *[]byte   // queued bytes; nil when idle
	flushing bool
	corked   bool // queue without writing until Uncork (or MaxPending)
	closing  bool // close dst once the queue drains
	err      error
}

// Codec encodes and decodes protobuf messages in place of
// google.golang.org/protobuf, for messages a program knows a faster way to
// handle (calccodec.Codec). MarshalAppend must write exactly Size bytes.
type Codec interface {
	Size(m proto.Message) int
	MarshalAppend(b []byte, m proto.Message) ([]byte, error)
	Unmarshal(b []byte, m proto.Message) error
}

// SetCodec makes SendMessage encode with c; nil means protobuf-go. Call it
// before the Writer is used.
func (w *Writer) SetCodec(c Codec) { w.codec = c }

// NewWriter returns a Writer to dst. The first failed write closes dst and
// makes every later Send fail with that error.
func NewWriter(dst io.WriteCloser) *Writer {
	w := &Writer{dst: dst}
	w.drained.L = &w.mu
	return w
}

// Send appends bytes with fn (typically a frame) and makes sure they are
// written. It blocks while MaxPending bytes are queued, and returns the
// Writer's error, without calling fn, once it has failed or closed. fn runs
// with the Writer locked and must not call it.
func (w *Writer) Send(fn func([]byte) []byte) error { return w.add(fn, true) }

func (w *Writer) add(fn func([]byte) []byte, write bool) error {
	w.mu.Lock()
	for w.flushing && w.err == nil && w.buf != nil && len(*w.buf) >= MaxPending {
		w.drained.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if w.buf == nil {
		w.buf = writeBufPool.Get().(*[]byte)
	}
	*w.buf = fn(*w.buf)
	if w.flushing || (w.corked || !write) && len(*w.buf) < MaxPending {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	return w.flush()
}

// Flush writes what is queued, unless a write in progress will.
func (w *Writer) Flush() error {
	w.mu.Lock()
	return w.flushLocked()
}

// flushLocked is Flush with w.mu held; it releases it.
func (w *Writer) flushLocked() error {
	if w.flushing || w.err != nil || w.buf == nil || len(*w.buf) == 0 {
		err := w.err
		w.mu.Unlock()
		if errors.Is(err, ErrWriterClosed) {
			return nil
		}
		return err
	}
	w.flushing = true
	return w.flush()
}

// Cork makes Send queue frames without writing them until Uncork, or until
// MaxPending bytes are queued. A server corks while it works through a
// burst of requests, so their answers leave in one write.
func (w *Writer) Cork() {
	w.mu.Lock()
	w.corked = true
	w.mu.Unlock()
}

// Uncork ends Cork and writes what was queued meanwhile.
func (w *Writer) Uncork() error {
	w.mu.Lock()
	w.corked = false
	return w.flushLocked()
}

// SendMessage sends a frame of kind for call id carrying msg, compressed if
// its size is at least threshold and compression saves space. Small
// messages are marshalled straight into the queue. With later set the
// frame waits for a later Send, Flush or Uncork (or MaxPending queued
// bytes), so a sender that knows more frames follow has them share a write.
func (w *Writer) SendMessage(kind Kind, id uint32, msg proto.Message, threshold int, later bool) error {
	return w.SendSized(kind, id, msg, w.Size(msg), threshold, later)
}

// Size is msg's encoded size, as the Writer's codec (or protobuf) computes
// it.
func (w *Writer) Size(msg proto.Message) int {
	if w.codec != nil {
		return w.codec.Size(msg)
	}
	return proto.Size(msg)
}

// SendSized is SendMessage for a message whose Size the caller has just
// computed (to check it against a limit), and which has not changed since.
func (w *Writer) SendSized(kind Kind, id uint32, msg proto.Message, size, threshold int, later bool) error {
	if threshold > 0 && size >= threshold {
		raw, err := w.marshalAppend(nil, msg)
		if err != nil {
			return err
		}
		return w.add(func(b []byte) []byte { return AppendMessageFrame(b, kind, id, raw, threshold) }, !later)
	}
	var merr error
	err := w.add(func(b []byte) []byte {
		start := len(b)
		b = appendFrameHeader(b, kind, 0, id, size)
		if b, merr = w.marshalAppend(b, msg); merr != nil {
			return b[:start]
		}
		return b
	}, !later)
	if merr != nil {
		return merr
	}
	return err
}

// flush writes the queue until it is empty. Called with w.mu held and
// w.flushing set; returns with w.mu released and the error of this flush.
func (w *Writer) flush() error {
	var spare *[]byte
	for w.buf != nil && len(*w.buf) > 0 && w.err == nil {
		out := w.buf
		w.buf = spare
		if w.buf != nil {
			*w.buf = (*w.buf)[:0]
		}
		w.mu.Unlock()
		_, err := w.dst.Write(*out)
		w.mu.Lock()
		if err != nil {
			w.err = err
			_ = w.dst.Close()
		}
		spare = out
		w.drained.Broadcast()
	}
	w.flushing = false
	putBuf(spare)
	putBuf(w.buf)
	w.buf = nil
	if w.closing && w.err == nil {
		w.err = ErrWriterClosed
		_ = w.dst.Close()
	}
	err := w.err
	w.mu.Unlock()
	if errors.Is(err, ErrWriterClosed) {
		return nil // what was queued before the close was written
	}
	return err
}

// CloseAfterFlush closes the destination once everything queued has been
// written; later Sends fail with ErrWriterClosed.
func (w *Writer) CloseAfterFlush() {
	w.mu.Lock()
	w.closing, w.corked = true, false
	switch {
	case w.flushing: // the flusher closes when done
	case w.err == nil && w.buf != nil && len(*w.buf) > 0:
		w.flushing = true
		_ = w.flush() // closes once written
		return
	case w.err == nil:
		w.err = ErrWriterClosed
		_ = w.dst.Close()
	}
	w.mu.Unlock()
}

// putBuf returns a write buffer to the pool.
func putBuf(b *[]byte) {
	if b != nil && cap(*b) <= maxPooledBuffer {
		*b = (*b)[:0]
		writeBufPool.Put(b)
	}
}

// marshalAppend appends msg's encoding, whose size was just computed, to b.
func (w *Writer) marshalAppend(b []byte, msg proto.Message) ([]byte, error) {
	if w.codec != nil {
		return w.codec.MarshalAppend(b, msg)
	}
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, msg)
}
