package wire

import (
	"encoding/binary"
	"fmt"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// SettingID identifies one entry of a SETTINGS frame.
type SettingID uint16

// The settings a server announces. A client ignores ids it does not know.
const (
	SettingMaxFrameSize       SettingID = 1 // largest length prefix the server accepts
	SettingMaxMessageSize     SettingID = 2 // largest decoded message the server accepts
	SettingCompressThreshold  SettingID = 3 // message size at which the server compresses
	SettingMaxConcurrentCalls SettingID = 4 // calls a connection may have in flight
	SettingIdleTimeoutMillis  SettingID = 5 // idle time after which the server closes; 0 = never
)

// Settings are the server's limits, announced in its SETTINGS frame.
type Settings struct {
	MaxFrameSize       uint32
	MaxMessageSize     uint32
	CompressThreshold  uint32
	MaxConcurrentCalls uint32
	IdleTimeout        time.Duration
}

// settingSize is the size of one entry: a 2-byte id and a 4-byte value.
const settingSize = 6

// AppendSettings appends the payload of a SETTINGS frame announcing s.
func AppendSettings(dst []byte, s Settings) []byte {
	for _, e := range [...]struct {
		id SettingID
		v  uint32
	}{
		{SettingMaxFrameSize, s.MaxFrameSize},
		{SettingMaxMessageSize, s.MaxMessageSize},
		{SettingCompressThreshold, s.CompressThreshold},
		{SettingMaxConcurrentCalls, s.MaxConcurrentCalls},
		{SettingIdleTimeoutMillis, uint32(min(s.IdleTimeout.Milliseconds(), 1<<32-1))},
	} {
		dst = binary.BigEndian.AppendUint16(dst, uint16(e.id))
		dst = binary.BigEndian.AppendUint32(dst, e.v)
	}
	return dst
}

// ParseSettings decodes a SETTINGS payload; unknown ids are skipped.
func ParseSettings(payload []byte) (Settings, error) {
	var s Settings
	if len(payload)%settingSize != 0 {
		return s, fmt.Errorf("%w: SETTINGS payload of %d bytes", ErrBadPayload, len(payload))
	}
	for p := payload; len(p) > 0; p = p[settingSize:] {
		v := binary.BigEndian.Uint32(p[2:])
		switch SettingID(binary.BigEndian.Uint16(p)) {
		case SettingMaxFrameSize:
			s.MaxFrameSize = v
		case SettingMaxMessageSize:
			s.MaxMessageSize = v
		case SettingCompressThreshold:
			s.CompressThreshold = v
		case SettingMaxConcurrentCalls:
			s.MaxConcurrentCalls = v
		case SettingIdleTimeoutMillis:
			s.IdleTimeout = time.Duration(v) * time.Millisecond
		}
	}
	return s, nil
}

// AppendGoAway appends the payload of a GOAWAY frame: the id of the last call
// the server accepted, then the reason as a google.rpc.Status (code OK for a
// graceful shutdown).
func AppendGoAway(dst []byte, lastID uint32, reason *spb.Status) []byte {
	dst = binary.BigEndian.AppendUint32(dst, lastID)
	return AppendStatus(dst, reason)
}

// ParseGoAway decodes a GOAWAY payload.
func ParseGoAway(payload []byte) (lastID uint32, reason *spb.Status, err error) {
	if len(payload) < 4 {
		return 0, nil, fmt.Errorf("%w: GOAWAY payload of %d bytes", ErrBadPayload, len(payload))
	}
	reason, err = ParseStatus(payload[4:])
	return binary.BigEndian.Uint32(payload), reason, err
}

// AppendStatus appends st encoded as a google.rpc.Status message. A nil st
// or one with code OK and nothing else encodes as zero bytes.
func AppendStatus(dst []byte, st *spb.Status) []byte {
	out, err := proto.MarshalOptions{}.MarshalAppend(dst, st)
	if err != nil { // only for invalid UTF-8 in the message: drop it
		return AppendStatus(dst, &spb.Status{Code: st.GetCode()})
	}
	return out
}

// ParseStatus decodes a STATUS payload, a google.rpc.Status message.
func ParseStatus(payload []byte) (*spb.Status, error) {
	st := new(spb.Status)
	if err := proto.Unmarshal(payload, st); err != nil {
		return nil, fmt.Errorf("%w: status: %v", ErrBadPayload, err)
	}
	return st, nil
}
