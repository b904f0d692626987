package wire

import (
	"fmt"
	"strconv"

	"github.com/golang/snappy"
)

// AppendMessage appends msg to dst as a frame's message: as a snappy block
// with FlagCompressed if len(msg) >= threshold and the block is smaller, or
// as it is otherwise. threshold <= 0 disables compression.
func AppendMessage(dst, msg []byte, threshold int) ([]byte, Flags) {
	if threshold <= 0 || len(msg) < threshold {
		return append(dst, msg...), 0
	}
	start := len(dst)
	dst = growBy(dst, snappy.MaxEncodedLen(len(msg)))
	enc := snappy.Encode(dst[start:cap(dst)], msg)
	if len(enc) >= len(msg) {
		return append(dst[:start], msg...), 0
	}
	return dst[:start+len(enc)], FlagCompressed
}

// DecodeMessage returns the message in a frame's payload. An uncompressed
// payload is returned as is; a compressed one is decoded into dst's storage
// (grown if needed) after its decoded length has been checked
// (CheckSnappy). Errors wrap ErrMessageTooLarge or ErrCorruptMessage.
func DecodeMessage(dst, payload []byte, flags Flags, maxMessage int) ([]byte, error) {
	if flags&FlagCompressed == 0 {
		if len(payload) > maxMessage {
			return nil, fmt.Errorf("%w: %d > %d bytes", ErrMessageTooLarge, len(payload), maxMessage)
		}
		return payload, nil
	}
	n, err := CheckSnappy(payload, maxMessage)
	if err != nil {
		return nil, err
	}
	out, err := snappy.Decode(growBy(dst[:0], n)[:n], payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
	return out, nil
}

// MaxSnappyRatio bounds how much larger than its block a snappy message can
// decode to. A snappy element never yields more than 64 bytes for its 3
// (copy with a 2-byte offset, the best case), so a block of n bytes decodes
// to fewer than 22n: a block that claims more is lying, and is rejected
// before anything is allocated or decoded.
const MaxSnappyRatio = 22

// CheckSnappy returns the decoded length a snappy block claims, after
// checking it against maxMessage and against MaxSnappyRatio times the
// block's own size: whatever a block claims, rejecting it costs a varint
// read. Errors wrap ErrMessageTooLarge (a claim over either bound: a
// decompression bomb) or ErrCorruptMessage (no valid length).
func CheckSnappy(block []byte, maxMessage int) (int, error) {
	n, err := snappy.DecodedLen(block)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
	if n > maxMessage || n > MaxSnappyRatio*len(block)+MaxSnappyRatio {
		return 0, &bombError{block: len(block), claimed: n, max: maxMessage}
	}
	return n, nil
}

// bombError is a snappy block's claim to more decoded bytes than the
// message limit or the block's size allows. It is built without fmt so
// that refusing a bomb costs less than serving an ordinary call.
type bombError struct{ block, claimed, max int }

func (e *bombError) Error() string {
	if e.claimed > e.max {
		return ErrMessageTooLarge.Error() + ": decoded length " + strconv.Itoa(e.claimed) + " > " + strconv.Itoa(e.max) + " bytes"
	}
	return ErrMessageTooLarge.Error() + ": a " + strconv.Itoa(e.block) + "-byte snappy block claims " +
		strconv.Itoa(e.claimed) + " decoded bytes, more than snappy can encode in it"
}

func (e *bombError) Unwrap() error { return ErrMessageTooLarge }

// growBy returns dst with room for n more bytes.
func growBy(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	return append(dst[:cap(dst)], make([]byte, n-(cap(dst)-len(dst)))...)[:len(dst)]
}
