package wire

import (
	"fmt"

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
// (grown if needed) after its decoded length has been checked against
// maxMessage. Errors wrap ErrMessageTooLarge or ErrCorruptMessage.
func DecodeMessage(dst, payload []byte, flags Flags, maxMessage int) ([]byte, error) {
	if flags&FlagCompressed == 0 {
		if len(payload) > maxMessage {
			return nil, fmt.Errorf("%w: %d > %d bytes", ErrMessageTooLarge, len(payload), maxMessage)
		}
		return payload, nil
	}
	n, err := snappy.DecodedLen(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
	if n > maxMessage {
		return nil, fmt.Errorf("%w: decoded length %d > %d bytes", ErrMessageTooLarge, n, maxMessage)
	}
	out, err := snappy.Decode(growBy(dst[:0], n)[:n], payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
	return out, nil
}

// growBy returns dst with room for n more bytes.
func growBy(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	return append(dst[:cap(dst)], make([]byte, n-(cap(dst)-len(dst)))...)[:len(dst)]
}
