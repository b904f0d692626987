package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/calcrpc/calc/internal/wire"
)

// readMakers are the awkward readers every framing test runs through, as in
// bufio's tests.
var readMakers = []struct {
	name string
	fn   func(io.Reader) io.Reader
}{
	{"full", func(r io.Reader) io.Reader { return r }},
	{"byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data+err", iotest.DataErrReader},
}

// stream returns frames of growing sizes, including ones larger than the
// pooled read buffer, back to back.
func stream() ([]byte, []wire.Frame) {
	var b []byte
	var frames []wire.Frame
	for i, n := range []int{0, 1, 10, 100, wire.ReadBufferSize - wire.FrameOverhead, wire.ReadBufferSize, 3 * wire.ReadBufferSize, 5} {
		p := bytes.Repeat([]byte{byte(i + 1)}, n)
		f := wire.Frame{Kind: wire.KindMessage, Flags: wire.FlagCompressed, ID: uint32(i + 1), Payload: p}
		b = wire.AppendFrame(b, f.Kind, f.Flags, f.ID, f.Payload)
		frames = append(frames, f)
	}
	return b, frames
}

func TestReadFrameAwkwardReaders(t *testing.T) {
	data, want := stream()
	for _, rm := range readMakers {
		t.Run(rm.name, func(t *testing.T) {
			r := wire.NewReader(rm.fn(bytes.NewReader(data)), 0)
			for i, w := range want {
				f, err := r.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if f.Kind != w.Kind || f.Flags != w.Flags || f.ID != w.ID || !bytes.Equal(f.Payload, w.Payload) {
					t.Fatalf("frame %d: got %s/%d/%d len %d", i, f.Kind, f.Flags, f.ID, len(f.Payload))
				}
				if i%2 == 0 && r.Buffered() == 0 {
					r.Release()
				}
			}
			if _, err := r.ReadFrame(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestReadFrameSourceError(t *testing.T) {
	data, _ := stream()
	r := wire.NewReader(iotest.TimeoutReader(bytes.NewReader(data)), 0)
	if _, err := r.ReadFrame(); err != nil {
		t.Fatalf("first frame: %v", err)
	}
	var err error
	for range 10 {
		if _, err = r.ReadFrame(); err != nil {
			break
		}
	}
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("got %v, want the source's error", err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	frame := wire.AppendFrame(nil, wire.KindPing, 0, 0, make([]byte, 8))
	tests := []struct {
		name     string
		data     []byte
		maxFrame int
		want     error
	}{
		{"empty", nil, 0, io.EOF},
		{"length only", []byte{0, 0, 0, 14}, 0, wire.ErrTruncated},
		{"half a prefix", []byte{0, 0}, 0, wire.ErrTruncated},
		{"cut payload", frame[:len(frame)-1], 0, wire.ErrTruncated},
		{"too large", []byte{0xff, 0xff, 0xff, 0xff}, 0, wire.ErrFrameTooLarge},
		{"one over max", frame, len(frame) - 5, wire.ErrFrameTooLarge},
		{"too small", []byte{0, 0, 0, 5, 1, 0, 0, 0, 0}, 0, wire.ErrFrameTooSmall},
		{"unknown kind", wire.AppendFrame(nil, 0x42, 0, 1, nil), 0, wire.ErrUnknownKind},
		{"kind zero", wire.AppendFrame(nil, 0, 0, 1, nil), 0, wire.ErrUnknownKind},
		{"large cut", append([]byte{0, 1, 0, 0}, make([]byte, 1000)...), 0, wire.ErrTruncated},
	}
	for _, tt := range tests {
		for _, rm := range readMakers {
			t.Run(tt.name+"/"+rm.name, func(t *testing.T) {
				r := wire.NewReader(rm.fn(bytes.NewReader(tt.data)), tt.maxFrame)
				if _, err := r.ReadFrame(); !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
			})
		}
	}
}

// TestLengthNeverAllocatesAhead checks that a length prefix claiming the
// max frame size makes the reader allocate only for bytes that arrived.
func TestLengthNeverAllocatesAhead(t *testing.T) {
	data := append([]byte{0, 0x40, 0x40, 0}, make([]byte, 100)...) // claims 4,210,688 bytes
	r := wire.NewReader(bytes.NewReader(data), 0)
	before := memAlloc()
	_, err := r.ReadFrame()
	after := memAlloc()
	if !errors.Is(err, wire.ErrTruncated) {
		t.Fatalf("got %v", err)
	}
	if grew := after - before; grew > 1<<20 {
		t.Fatalf("reader allocated %d bytes for 104 bytes of input", grew)
	}
}

func TestPreface(t *testing.T) {
	tests := []struct {
		in      string
		version byte
		err     error
	}{
		{"CALC\x01", 1, nil},
		{"CALC\x02", 2, nil},
		{"GET / HTTP/1.1\r\n", 0, wire.ErrBadMagic},
		{"\x16\x03\x01\x02\x00", 0, wire.ErrBadMagic},
		{"CAL", 0, io.ErrUnexpectedEOF},
		{"CALC", 0, io.EOF},
	}
	for _, tt := range tests {
		for _, rm := range readMakers {
			t.Run(fmt.Sprintf("%q/%s", tt.in, rm.name), func(t *testing.T) {
				v, _, err := wire.ReadPreface(rm.fn(bytes.NewReader([]byte(tt.in))))
				if !errors.Is(err, tt.err) || v != tt.version {
					t.Fatalf("got %d, %v; want %d, %v", v, err, tt.version, tt.err)
				}
			})
		}
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader and request
// header parser: they must never panic, never return a frame longer than the
// limit and never loop.
func FuzzReadFrame(f *testing.F) {
	data, _ := stream()
	f.Add(data[:200])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(wire.AppendFrame(nil, wire.KindRequest, 0x0f, 1, []byte{1, 3, 'a', 'b', 'c', 0x90, 0xa1, 0x0f, 1, 1, 'k', 1, 'v', 8, 1}))
	f.Add(wire.AppendFrame(nil, wire.KindRequest, wire.FlagCompressed, 2, []byte{1, 0x80, 0x80, 0x80, 0x80, 0x04, 0, 0x61}))
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxFrame = 1 << 16
		r := wire.NewReader(bytes.NewReader(in), maxFrame)
		var h wire.RequestHeader
		for range len(in) + 1 {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			if len(fr.Payload)+wire.HeaderSize > maxFrame {
				t.Fatalf("frame of %d bytes past the limit", len(fr.Payload))
			}
			msg, err := wire.ParseRequestHeader(fr.Flags, fr.Payload, &h)
			if err == nil {
				if _, err := wire.DecodeMessage(nil, msg, fr.Flags, 1<<12); err != nil && !errors.Is(err, wire.ErrMessageTooLarge) && !errors.Is(err, wire.ErrCorruptMessage) {
					t.Fatalf("DecodeMessage: unexpected error %v", err)
				}
			}
			_, _ = wire.ParseSettings(fr.Payload)
			_, _, _ = wire.ParseGoAway(fr.Payload)
		}
		t.Fatal("reader did not stop")
	})
}

// timeoutOnce fails its first read with a timeout, then reads from r.
type timeoutOnce struct {
	r     io.Reader
	fired bool
}

type timeoutError struct{}

func (timeoutError) Error() string { return "i/o timeout" }
func (timeoutError) Timeout() bool { return true }

func (t *timeoutOnce) Read(p []byte) (int, error) {
	if !t.fired {
		t.fired = true
		return 0, timeoutError{}
	}
	return t.r.Read(p)
}

func TestFillTimeoutIsNotSticky(t *testing.T) {
	frame := wire.AppendFrame(nil, wire.KindPing, 0, 0, []byte("12345678"))
	r := wire.NewReader(&timeoutOnce{r: bytes.NewReader(frame)}, 0)
	if err := r.Fill(); !errors.As(err, new(timeoutError)) {
		t.Fatalf("first Fill: %v, want the timeout", err)
	}
	if err := r.Fill(); err != nil || r.Buffered() != len(frame) {
		t.Fatalf("second Fill: %v, %d bytes buffered", err, r.Buffered())
	}
	if f, err := r.ReadFrame(); err != nil || f.Kind != wire.KindPing {
		t.Fatalf("ReadFrame after Fill: %v %v", f.Kind, err)
	}
	if err := r.Fill(); err != io.EOF {
		t.Fatalf("Fill at the end: %v, want io.EOF", err)
	}
}

// TestBudget checks that Readers sharing a Budget take from it only as a
// large frame's bytes arrive, fail with ErrBudgetExhausted past it, and
// give everything back when the frame is consumed or fails.
func TestBudget(t *testing.T) {
	big := wire.AppendFrame(nil, wire.KindPing, 0, 0, make([]byte, 100<<10)) // 100 KiB: not a pooled-buffer frame
	b := wire.NewBudget(150 << 10)

	r1 := wire.NewReader(bytes.NewReader(append(append([]byte{}, big...), big...)), 1<<20)
	r1.SetBudget(b)
	if _, err := r1.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	held := b.InUse()
	if held < 100<<10 || held > 150<<10 {
		t.Fatalf("a 100 KiB frame holds %d bytes of budget", held)
	}
	// A second reader's large frame does not fit what is left.
	r2 := wire.NewReader(bytes.NewReader(big), 1<<20)
	r2.SetBudget(b)
	if _, err := r2.ReadFrame(); !errors.Is(err, wire.ErrBudgetExhausted) {
		t.Fatalf("second frame: %v, want ErrBudgetExhausted", err)
	}
	if b.InUse() != held {
		t.Fatalf("a refused frame kept %d bytes of budget", b.InUse()-held)
	}
	// Reading on gives the first frame's bytes back before taking more.
	if _, err := r1.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	r1.Release()
	if b.InUse() != 0 {
		t.Fatalf("after Release: %d bytes in use", b.InUse())
	}
	// A frame cut short gives back what it took.
	r3 := wire.NewReader(bytes.NewReader(big[:80<<10]), 1<<20)
	r3.SetBudget(b)
	if _, err := r3.ReadFrame(); !errors.Is(err, wire.ErrTruncated) || b.InUse() != 0 {
		t.Fatalf("truncated: %v, %d bytes in use", err, b.InUse())
	}
	// A length prefix alone takes nothing.
	r4 := wire.NewReader(bytes.NewReader([]byte{0, 0x40, 0, 0}), 8<<20)
	r4.SetBudget(wire.NewBudget(1))
	if _, err := r4.ReadFrame(); !errors.Is(err, wire.ErrBudgetExhausted) && !errors.Is(err, wire.ErrTruncated) {
		t.Fatalf("prefix only: %v", err)
	}
}
