package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	spb "google.golang.org/genproto/googleapis/rpc/status"
)

// Protocol constants.
const (
	// Magic opens every connection: the client's first four bytes.
	Magic = "CALC"
	// Version is the protocol version this package speaks, sent by the
	// client right after Magic.
	Version = 1
	// PrefaceSize is the size of the client's connection preface.
	PrefaceSize = len(Magic) + 1
	// ALPN is the TLS application protocol (RFC 7301) of calc's raw TCP
	// protocol over TLS: a server with TLS requires it, a client offers it.
	ALPN = "calc/1"
	// LengthSize is the size of a frame's length prefix.
	LengthSize = 4
	// HeaderSize is the size of the fixed frame header after the length
	// prefix: kind, flags and call id.
	HeaderSize = 6
	// FrameOverhead is the bytes every frame adds to its payload.
	FrameOverhead = LengthSize + HeaderSize
)

// Default limits; each can be changed per server or client.
const (
	// DefaultMaxMessageSize is the largest message, after decompression.
	DefaultMaxMessageSize = 4 << 20
	// DefaultMaxFrameSize is the largest value of a length prefix: a
	// maximum-size message plus 16 KiB for its header and metadata.
	DefaultMaxFrameSize = DefaultMaxMessageSize + 16<<10
	// DefaultCompressThreshold is the message size at and above which a
	// sender tries snappy; it keeps the compressed form only if smaller.
	DefaultCompressThreshold = 256
)

// Kind is a frame kind.
type Kind uint8

// The frame kinds of protocol v1.
const (
	KindSettings  Kind = 0x01 // server → client, once, after the preface
	KindRequest   Kind = 0x02 // client → server: opens a call
	KindMessage   Kind = 0x03 // either way: one message of a streaming call
	KindHalfClose Kind = 0x04 // client → server: no more messages on a stream
	KindResponse  Kind = 0x05 // server → client: a unary call's response, status OK
	KindStatus    Kind = 0x06 // server → client: a call's final google.rpc.Status
	KindCancel    Kind = 0x07 // client → server: cancel a call
	KindPing      Kind = 0x08 // either way: 8 opaque bytes to echo
	KindPong      Kind = 0x09 // either way: the echo of a ping
	KindGoAway    Kind = 0x0A // server → client: no new calls; last accepted id and why
)

var kindNames = [...]string{
	KindSettings: "SETTINGS", KindRequest: "REQUEST", KindMessage: "MESSAGE",
	KindHalfClose: "HALF_CLOSE", KindResponse: "RESPONSE", KindStatus: "STATUS",
	KindCancel: "CANCEL", KindPing: "PING", KindPong: "PONG", KindGoAway: "GOAWAY",
}

// Known reports whether k is a kind of protocol v1.
func (k Kind) Known() bool { return int(k) < len(kindNames) && kindNames[k] != "" }

// String returns the kind's name, or its hex value if unknown.
func (k Kind) String() string {
	if k.Known() {
		return kindNames[k]
	}
	return fmt.Sprintf("0x%02X", uint8(k))
}

// Flags are a frame's flag bits.
type Flags uint8

// The frame flags. FlagCompressed applies to REQUEST, MESSAGE and RESPONSE
// frames; the others to REQUEST frames only.
const (
	FlagCompressed Flags = 0x01 // the message is a snappy block
	FlagMethodName Flags = 0x02 // the request binds its method ref to a name
	FlagDeadline   Flags = 0x04 // the request carries a deadline budget
	FlagMetadata   Flags = 0x08 // the request carries metadata
)

// Frame is one decoded frame. Payload aliases the Reader's buffer and is
// valid only until the next call to ReadFrame or Release.
type Frame struct {
	Kind    Kind
	Flags   Flags
	ID      uint32
	Payload []byte
}

// Errors reported by the frame layer. Each ends a connection: after one of
// them a reader cannot find the next frame boundary.
var (
	ErrBadMagic        = errors.New("wire: bad connection preface magic")
	ErrFrameTooLarge   = errors.New("wire: frame length exceeds the max frame size")
	ErrFrameTooSmall   = errors.New("wire: frame length smaller than the frame header")
	ErrUnknownKind     = errors.New("wire: unknown frame kind")
	ErrTruncated       = errors.New("wire: truncated frame")
	ErrMessageTooLarge = errors.New("wire: message exceeds the max message size")
	ErrCorruptMessage  = errors.New("wire: corrupt snappy message")
	ErrBadHeader       = errors.New("wire: malformed request header")
	ErrBadPayload      = errors.New("wire: malformed control payload")
	ErrBudgetExhausted = errors.New("wire: server-wide memory budget for large frames exhausted")
)

// AppendFrame appends a frame with the given flags and payload to dst, as
// is: for frames whose payload needs no encoding (PING, PONG, CANCEL,
// HALF_CLOSE) and for tests that build frames byte by byte. The other
// Append*Frame functions set the flags themselves.
func AppendFrame(dst []byte, kind Kind, flags Flags, id uint32, payload []byte) []byte {
	dst = appendFrameHeader(dst, kind, flags, id, len(payload))
	return append(dst, payload...)
}

// appendFrameHeader appends the length prefix and header of a frame whose
// payload of payloadLen bytes the caller appends next.
func appendFrameHeader(dst []byte, kind Kind, flags Flags, id uint32, payloadLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(HeaderSize+payloadLen))
	dst = append(dst, byte(kind), byte(flags))
	return binary.BigEndian.AppendUint32(dst, id)
}

// finishFrame completes the frame starting at dst[start:], whose payload
// was appended in place after a header from appendFrameHeader: it sets the
// flags byte and rewrites the length prefix to cover everything up to
// len(dst).
func finishFrame(dst []byte, start int, flags Flags) []byte {
	dst[start+LengthSize+1] = byte(flags)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-LengthSize))
	return dst
}

// AppendRequest appends a whole REQUEST frame for call id: the header h,
// then msg, snappy-compressed if it is at least threshold bytes long and
// compression saves space (threshold <= 0 never compresses). The frame's
// flags say what the header carries and whether msg is compressed.
func AppendRequest(dst []byte, id uint32, h *RequestHeader, msg []byte, threshold int) []byte {
	start := len(dst)
	dst = appendFrameHeader(dst, KindRequest, 0, id, 0)
	dst, hflags := AppendRequestHeader(dst, h)
	dst, mflags := AppendMessage(dst, msg, threshold)
	return finishFrame(dst, start, hflags|mflags)
}

// AppendMessageFrame appends a frame of kind (MESSAGE or RESPONSE) for call
// id carrying the encoded message msg, compressed as AppendRequest does.
func AppendMessageFrame(dst []byte, kind Kind, id uint32, msg []byte, threshold int) []byte {
	start := len(dst)
	dst = appendFrameHeader(dst, kind, 0, id, 0)
	dst, flags := AppendMessage(dst, msg, threshold)
	return finishFrame(dst, start, flags)
}

// AppendStatusFrame appends a STATUS frame ending call id with st.
func AppendStatusFrame(dst []byte, id uint32, st *spb.Status) []byte {
	start := len(dst)
	dst = appendFrameHeader(dst, KindStatus, 0, id, 0)
	dst = AppendStatus(dst, st)
	return finishFrame(dst, start, 0)
}

// AppendGoAwayFrame appends a GOAWAY frame: no call above lastID will be
// processed, for the reason st.
func AppendGoAwayFrame(dst []byte, lastID uint32, st *spb.Status) []byte {
	start := len(dst)
	dst = appendFrameHeader(dst, KindGoAway, 0, 0, 0)
	dst = AppendGoAway(dst, lastID, st)
	return finishFrame(dst, start, 0)
}

// AppendSettingsFrame appends the SETTINGS frame announcing s.
func AppendSettingsFrame(dst []byte, s Settings) []byte {
	return AppendFrame(dst, KindSettings, 0, 0, AppendSettings(nil, s))
}

// AppendPreface appends the client's connection preface for Version.
func AppendPreface(dst []byte) []byte { return append(append(dst, Magic...), Version) }
