package wire_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/calcrpc/calc/internal/wire"
)

func TestAppendMessageThreshold(t *testing.T) {
	compressible := func(n int) []byte { return bytes.Repeat([]byte("ab"), n/2+1)[:n] }
	random := func(n int) []byte { // incompressible
		b := make([]byte, n)
		x := uint32(2463534242)
		for i := range b {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			b[i] = byte(x)
		}
		return b
	}
	tests := []struct {
		name       string
		msg        []byte
		threshold  int
		compressed bool
	}{
		{"below threshold", compressible(255), 256, false},
		{"at threshold", compressible(256), 256, true},
		{"incompressible", random(1000), 256, false},
		{"disabled", compressible(4096), 0, false},
		{"empty", nil, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, flags := wire.AppendMessage([]byte("prefix"), tt.msg, tt.threshold)
			if (flags&wire.FlagCompressed != 0) != tt.compressed {
				t.Fatalf("flags %b, want compressed=%v", flags, tt.compressed)
			}
			if !bytes.HasPrefix(out, []byte("prefix")) {
				t.Fatal("prefix lost")
			}
			got, err := wire.DecodeMessage(nil, out[6:], flags, 1<<20)
			if err != nil || !bytes.Equal(got, tt.msg) {
				t.Fatalf("round trip: %v, equal=%v", err, bytes.Equal(got, tt.msg))
			}
			if tt.compressed && len(out)-6 >= len(tt.msg) {
				t.Fatalf("compressed form of %d bytes is not smaller than %d", len(out)-6, len(tt.msg))
			}
		})
	}
}

func TestDecodeMessageLimits(t *testing.T) {
	big := snappy.Encode(nil, make([]byte, 5000))
	tests := []struct {
		name    string
		payload []byte
		flags   wire.Flags
		want    error
	}{
		{"plain at max", make([]byte, 4096), 0, nil},
		{"plain over max", make([]byte, 4097), 0, wire.ErrMessageTooLarge},
		{"decoded over max", big, wire.FlagCompressed, wire.ErrMessageTooLarge},
		{"bomb", []byte{0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x61}, wire.FlagCompressed, wire.ErrMessageTooLarge},
		{"bad varint", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, wire.FlagCompressed, wire.ErrCorruptMessage},
		{"corrupt", []byte{0x0a, 0xff, 0xff, 0xff}, wire.FlagCompressed, wire.ErrCorruptMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := memAlloc()
			_, err := wire.DecodeMessage(nil, tt.payload, tt.flags, 4096)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if grew := memAlloc() - before; tt.want != nil && grew > 64<<10 {
				t.Fatalf("rejected message allocated %d bytes", grew)
			}
		})
	}
}

func TestRequestHeaderRoundTrip(t *testing.T) {
	tests := []wire.RequestHeader{
		{MethodRef: 1},
		{MethodRef: 65535, MethodName: "/calculator.v1.CalculatorService/Calculate"},
		{MethodRef: 2, HasTimeout: true, Timeout: 0},
		{MethodRef: 2, HasTimeout: true, Timeout: 1500 * time.Millisecond},
		{MethodRef: 3, Metadata: []string{"authorization", "Bearer x", "trace-bin", "\x00\xff"}},
		{MethodRef: 4, MethodName: "/a/b", HasTimeout: true, Timeout: time.Microsecond, Metadata: []string{"k", ""}},
	}
	for _, h := range tests {
		b, flags := wire.AppendRequestHeader(nil, &h)
		b = append(b, "msg"...)
		var got wire.RequestHeader
		msg, err := wire.ParseRequestHeader(flags, b, &got)
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if string(msg) != "msg" || got.MethodRef != h.MethodRef || got.MethodName != h.MethodName ||
			got.HasTimeout != h.HasTimeout || got.Timeout != h.Timeout || strings.Join(got.Metadata, "|") != strings.Join(h.Metadata, "|") {
			t.Fatalf("round trip of %+v gave %+v and %q", h, got, msg)
		}
	}
}

func TestRequestHeaderErrors(t *testing.T) {
	tests := []struct {
		name    string
		flags   wire.Flags
		payload []byte
	}{
		{"empty", 0, nil},
		{"ref zero", 0, []byte{0}},
		{"ref too big", 0, []byte{0x80, 0x80, 0x04}},
		{"truncated varint", 0, []byte{0x80}},
		{"name past payload", wire.FlagMethodName, []byte{1, 5, 'a'}},
		{"empty name", wire.FlagMethodName, []byte{1, 0}},
		{"name too long", wire.FlagMethodName, append([]byte{1, 0x81, 0x04}, make([]byte, 513)...)},
		{"missing deadline", wire.FlagDeadline, []byte{1}},
		{"metadata count too big", wire.FlagMetadata, []byte{1, 0xff, 0xff, 0x03}},
		{"metadata value missing", wire.FlagMetadata, []byte{1, 1, 1, 'k'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h wire.RequestHeader
			if _, err := wire.ParseRequestHeader(tt.flags, tt.payload, &h); !errors.Is(err, wire.ErrBadHeader) {
				t.Fatalf("got %v, want ErrBadHeader", err)
			}
		})
	}
}

func TestSettingsRoundTrip(t *testing.T) {
	s := wire.Settings{MaxFrameSize: 1, MaxMessageSize: 2, CompressThreshold: 3, MaxConcurrentCalls: 4, IdleTimeout: 5 * time.Second}
	p := wire.AppendSettings(nil, s)
	p = append(p, 0x12, 0x34, 0, 0, 0, 9) // an unknown id is skipped
	got, err := wire.ParseSettings(p)
	if err != nil || got != s {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := wire.ParseSettings(p[:7]); !errors.Is(err, wire.ErrBadPayload) {
		t.Fatalf("odd length: %v", err)
	}
}

// countingWriter records the writes it is given.
type countingWriter struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
	delay  time.Duration
}

func (w *countingWriter) Write(p []byte) (int, error) {
	time.Sleep(w.delay)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) Close() error { return nil }

// TestWriterCoalesces checks that frames sent by many goroutines while a
// write is in progress go out together, whole and uninterleaved.
func TestWriterCoalesces(t *testing.T) {
	dst := &countingWriter{delay: time.Millisecond}
	w := wire.NewWriter(dst)
	const senders, each = 8, 200
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_ = w.Send(func(b []byte) []byte {
					return wire.AppendFrame(b, wire.KindMessage, 0, uint32(g*each+i+1), []byte("payload"))
				})
			}
		}()
	}
	wg.Wait()
	r := wire.NewReader(&dst.buf, 0)
	n := 0
	for {
		_, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != senders*each {
		t.Fatalf("read %d frames, want %d", n, senders*each)
	}
	if dst.writes >= n {
		t.Fatalf("%d writes for %d frames: nothing coalesced", dst.writes, n)
	}
	t.Logf("%d frames in %d writes", n, dst.writes)
}

// failingWriter fails every write.
type failingWriter struct{ closed bool }

func (w *failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
func (w *failingWriter) Close() error              { w.closed = true; return nil }

func TestWriterFailsAndCloses(t *testing.T) {
	dst := &failingWriter{}
	w := wire.NewWriter(dst)
	frame := func(b []byte) []byte { return wire.AppendFrame(b, wire.KindPing, 0, 0, nil) }
	if err := w.Send(frame); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("first send: %v", err)
	}
	if err := w.Send(frame); !errors.Is(err, io.ErrClosedPipe) || !dst.closed {
		t.Fatalf("second send: %v, closed=%v", err, dst.closed)
	}
	w2 := wire.NewWriter(&countingWriter{})
	w2.CloseAfterFlush()
	if err := w2.Send(frame); !errors.Is(err, wire.ErrWriterClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

func BenchmarkReadFrame(b *testing.B) {
	frame := wire.AppendFrame(nil, wire.KindRequest, 0, 3, []byte{1, 8, 1, 16, 2, 24, 3})
	data := bytes.Repeat(frame, 1000)
	src := bytes.NewReader(data)
	r := wire.NewReader(src, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for i := 0; b.Loop(); i++ {
		if i%1000 == 0 {
			src.Reset(data)
		}
		if _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	h := wire.RequestHeader{MethodRef: 1, HasTimeout: true, Timeout: time.Second}
	msg := []byte{8, 1, 16, 2, 24, 3}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = wire.AppendRequest(buf[:0], 1, &h, msg, 256)
	}
}

func BenchmarkCompress4K(b *testing.B) {
	msg := bytes.Repeat([]byte("2 * (3 + 4) - 10 / 4 + "), 180)
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		out, _ := wire.AppendMessage(buf[:0], msg, 256)
		if _, err := wire.DecodeMessage(buf[len(out):len(out)], out, wire.FlagCompressed, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

func TestWriterCork(t *testing.T) {
	dst := &countingWriter{}
	w := wire.NewWriter(dst)
	frame := func(b []byte) []byte { return wire.AppendFrame(b, wire.KindPing, 0, 0, nil) }
	w.Cork()
	for range 10 {
		_ = w.Send(frame)
	}
	if dst.writes != 0 {
		t.Fatalf("%d writes while corked", dst.writes)
	}
	if err := w.Uncork(); err != nil || dst.writes != 1 || dst.buf.Len() != 10*wire.FrameOverhead {
		t.Fatalf("Uncork: %v, %d writes of %d bytes; want 1 write of all 10 frames", err, dst.writes, dst.buf.Len())
	}
	w.Cork()
	_ = w.Send(frame)
	w.CloseAfterFlush() // flushes what a cork held, then closes
	if dst.writes != 2 || dst.buf.Len() != 11*wire.FrameOverhead {
		t.Fatalf("CloseAfterFlush dropped corked frames: %d writes, %d bytes", dst.writes, dst.buf.Len())
	}
}

func TestWriterSendLaterAndFlush(t *testing.T) {
	dst := &countingWriter{}
	w := wire.NewWriter(dst)
	frame := func(b []byte) []byte { return wire.AppendFrame(b, wire.KindPing, 0, 0, nil) }
	later := func() { _ = w.SendMessage(wire.KindMessage, 1, &spb.Status{}, 0, true) } // an empty message: a bare frame
	for range 5 {
		later()
	}
	if dst.writes != 0 {
		t.Fatalf("SendMessage(later) wrote: %d writes", dst.writes)
	}
	_ = w.Send(frame) // a Send writes what was queued before it too
	if dst.writes != 1 || dst.buf.Len() != 6*wire.FrameOverhead {
		t.Fatalf("Send: %d writes, %d bytes", dst.writes, dst.buf.Len())
	}
	later()
	if err := w.Flush(); err != nil || dst.writes != 2 || dst.buf.Len() != 7*wire.FrameOverhead {
		t.Fatalf("Flush: %v, %d writes, %d bytes", err, dst.writes, dst.buf.Len())
	}
	if err := w.Flush(); err != nil || dst.writes != 2 {
		t.Fatalf("empty Flush: %v, %d writes", err, dst.writes)
	}
}

func TestCheckSnappyRatio(t *testing.T) {
	// The densest block snappy can make: all zeros, long copies.
	for _, n := range []int{0, 1, 100, 64 << 10, 4 << 20} {
		block := snappy.Encode(nil, make([]byte, n))
		if got, err := wire.CheckSnappy(block, 4<<20); err != nil || got != n {
			t.Errorf("%d zeros in a %d-byte block: %d, %v", n, len(block), got, err)
		}
	}
	// 23 bytes claiming 4 MiB: within the message limit, not within what
	// 23 bytes of snappy can hold.
	bomb := append([]byte{0x80, 0x80, 0x80, 0x02}, bytes.Repeat([]byte{0xfe, 0xff, 0xff}, 6)...)
	if _, err := wire.CheckSnappy(bomb, 4<<20); !errors.Is(err, wire.ErrMessageTooLarge) {
		t.Errorf("bomb: %v, want ErrMessageTooLarge", err)
	}
	if _, err := wire.DecodeMessage(nil, bomb, wire.FlagCompressed, 4<<20); !errors.Is(err, wire.ErrMessageTooLarge) {
		t.Errorf("DecodeMessage(bomb): %v, want ErrMessageTooLarge", err)
	}
}

// BenchmarkDecodeBomb is what rejecting a 23-byte block that claims 4 MiB
// costs; BenchmarkDecodeCalculate, decoding an ordinary message, is its peer.
func BenchmarkDecodeBomb(b *testing.B) {
	bomb := append([]byte{0x80, 0x80, 0x80, 0x02}, bytes.Repeat([]byte{0xfe, 0xff, 0xff}, 6)...)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.DecodeMessage(nil, bomb, wire.FlagCompressed, 4<<20); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkDecodeCalculate(b *testing.B) {
	msg := bytes.Repeat([]byte("2 * (3 + 4) - 10 / 4 + "), 12) // 276 bytes: compressed on the wire
	block := snappy.Encode(nil, msg)
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.DecodeMessage(dst, block, wire.FlagCompressed, 4<<20); err != nil {
			b.Fatal(err)
		}
	}
}
