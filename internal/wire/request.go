package wire

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Request header limits.
const (
	// MaxMethodRef is the largest method ref a client may bind.
	MaxMethodRef = 1<<16 - 1
	// MaxMethodNameLen is the longest method name.
	MaxMethodNameLen = 512
	// MaxMetadataLen is the most bytes of metadata keys and values in one
	// request.
	MaxMetadataLen = 8 << 10
)

// RequestHeader is the start of a REQUEST frame's payload: which method to
// call, its deadline budget and its metadata. The message follows it.
type RequestHeader struct {
	// MethodRef is the connection-local number naming the method, >= 1.
	MethodRef uint32
	// HasTimeout says the request carries Timeout (FlagDeadline). (It
	// sits beside MethodRef, where it packs: a server keeps a header per
	// connection.)
	HasTimeout bool
	// MethodName, when not empty, binds MethodRef to this full method name
	// ("/calculator.v1.CalculatorService/Calculate") for the rest of the
	// connection. It is sent with FlagMethodName.
	MethodName string
	// Timeout is the deadline budget, sent in whole microseconds and
	// measured from when the server reads the frame.
	Timeout time.Duration
	// Metadata holds key, value pairs in order (FlagMetadata). Keys are
	// lower-case; values of keys ending in "-bin" are binary.
	Metadata []string
}

// AppendRequestHeader appends h to dst and returns the flags that describe
// it, to be OR-ed into the REQUEST frame's flags.
func AppendRequestHeader(dst []byte, h *RequestHeader) ([]byte, Flags) {
	var flags Flags
	dst = binary.AppendUvarint(dst, uint64(h.MethodRef))
	if h.MethodName != "" {
		flags |= FlagMethodName
		dst = appendString(dst, h.MethodName)
	}
	if h.HasTimeout {
		flags |= FlagDeadline
		dst = binary.AppendUvarint(dst, uint64(max(h.Timeout, 0)/time.Microsecond))
	}
	if len(h.Metadata) > 0 {
		flags |= FlagMetadata
		dst = binary.AppendUvarint(dst, uint64(len(h.Metadata)/2))
		for _, s := range h.Metadata {
			dst = appendString(dst, s)
		}
	}
	return dst, flags
}

// ParseRequestHeader decodes the header at the start of a REQUEST payload
// into h and returns the message bytes after it. Errors wrap ErrBadHeader.
func ParseRequestHeader(flags Flags, payload []byte, h *RequestHeader) ([]byte, error) {
	*h = RequestHeader{Metadata: h.Metadata[:0]}
	p := payload
	ref, err := uvarint(&p, MaxMethodRef, "method ref")
	if err != nil {
		return nil, err
	}
	if ref == 0 {
		return nil, fmt.Errorf("%w: method ref 0", ErrBadHeader)
	}
	h.MethodRef = uint32(ref)
	if flags&FlagMethodName != 0 {
		name, err := readString(&p, MaxMethodNameLen, "method name")
		if err != nil {
			return nil, err
		}
		if len(name) == 0 {
			return nil, fmt.Errorf("%w: empty method name", ErrBadHeader)
		}
		h.MethodName = string(name)
	}
	if flags&FlagDeadline != 0 {
		us, err := uvarint(&p, uint64(maxTimeout/time.Microsecond), "deadline")
		if err != nil {
			return nil, err
		}
		h.HasTimeout, h.Timeout = true, time.Duration(us)*time.Microsecond
	}
	if flags&FlagMetadata != 0 {
		n, err := uvarint(&p, MaxMetadataLen/2, "metadata count")
		if err != nil {
			return nil, err
		}
		budget := MaxMetadataLen
		for i := uint64(0); i < 2*n; i++ {
			s, err := readString(&p, budget, "metadata")
			if err != nil {
				return nil, err
			}
			budget -= len(s)
			h.Metadata = append(h.Metadata, string(s))
		}
	}
	return p, nil
}

// maxTimeout bounds deadline budgets so they convert to a time.Duration.
const maxTimeout = 100 * 365 * 24 * time.Hour

// uvarint consumes a uvarint no greater than limit from *p.
func uvarint(p *[]byte, limit uint64, what string) (uint64, error) {
	v, n := binary.Uvarint(*p)
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad %s varint", ErrBadHeader, what)
	}
	if v > limit {
		return 0, fmt.Errorf("%w: %s %d exceeds %d", ErrBadHeader, what, v, limit)
	}
	*p = (*p)[n:]
	return v, nil
}

// readString consumes a uvarint length and that many bytes from *p.
func readString(p *[]byte, limit int, what string) ([]byte, error) {
	n, err := uvarint(p, uint64(limit), what+" length")
	if err != nil {
		return nil, err
	}
	if uint64(len(*p)) < n {
		return nil, fmt.Errorf("%w: %s runs past the payload", ErrBadHeader, what)
	}
	s := (*p)[:n]
	*p = (*p)[n:]
	return s, nil
}

// appendString appends s with its uvarint length.
func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}
