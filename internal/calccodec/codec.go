// Package calccodec encodes and decodes calculator.v1's hot messages by
// hand, for the raw TCP transport's two ends (tcpserver.Options.Codec,
// tcpconn.Options.Codec).
package calccodec

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
)

// Codec encodes and decodes the service's four hot messages,
// CalculateRequest, CalculateResponse, CalculateStreamRequest and
// CalculateStreamResponse, by hand with protowire, and every other message
// with google.golang.org/protobuf. A transport that takes a codec
// (tcpserver.Options.Codec, tcpconn.Options.Codec) spends on a calculation's messages a few tens
// of nanoseconds instead of protobuf-go's reflective few hundred, most of a
// streamed calculation's cost (BENCHMARKS.md, streaming).
//
// The bytes are the ones protobuf-go writes (fields in number order, zero
// values omitted, a oneof's value always written); decoding takes the
// canonical encoding and anything protobuf-go accepts: whatever the fast
// path does not expect (an unknown field, a wire type that is not the
// field's, a malformed varint) is handed to proto.Unmarshal, which
// decides. A CalculateStreamResponse carrying an error, and messages with
// unknown fields, are encoded by protobuf-go. FuzzCodec holds it to
// protobuf-go's results.
type Codec struct{}

// Size returns the size of m's encoding.
func (Codec) Size(m proto.Message) int {
	switch m := m.(type) {
	case *calculatorv1.CalculateRequest:
		if len(m.ProtoReflect().GetUnknown()) == 0 {
			return sizeCalculateRequest(m)
		}
	case *calculatorv1.CalculateResponse:
		if len(m.ProtoReflect().GetUnknown()) == 0 {
			return sizeVarintField(uint64(m.Result))
		}
	case *calculatorv1.CalculateStreamRequest:
		if fastStreamRequest(m) {
			n := sizeVarintField(m.Id)
			if m.Calculation != nil {
				n += sizeMessageField(sizeCalculateRequest(m.Calculation))
			}
			return n
		}
	case *calculatorv1.CalculateStreamResponse:
		if r, ok := fastStreamResponse(m); ok {
			n := sizeVarintField(m.Id)
			if r != nil {
				n += 1 + protowire.SizeVarint(uint64(r.Result))
			}
			return n
		}
	}
	return proto.Size(m)
}

// MarshalAppend appends m's encoding to b.
func (Codec) MarshalAppend(b []byte, m proto.Message) ([]byte, error) {
	switch m := m.(type) {
	case *calculatorv1.CalculateRequest:
		if len(m.ProtoReflect().GetUnknown()) == 0 {
			return appendCalculateRequest(b, m), nil
		}
	case *calculatorv1.CalculateResponse:
		if len(m.ProtoReflect().GetUnknown()) == 0 {
			return appendVarintField(b, 1, uint64(m.Result)), nil
		}
	case *calculatorv1.CalculateStreamRequest:
		if fastStreamRequest(m) {
			b = appendVarintField(b, 1, m.Id)
			if m.Calculation != nil {
				b = protowire.AppendTag(b, 2, protowire.BytesType)
				b = protowire.AppendVarint(b, uint64(sizeCalculateRequest(m.Calculation)))
				b = appendCalculateRequest(b, m.Calculation)
			}
			return b, nil
		}
	case *calculatorv1.CalculateStreamResponse:
		if r, ok := fastStreamResponse(m); ok {
			b = appendVarintField(b, 1, m.Id)
			if r != nil { // a oneof's value is written even when zero
				b = protowire.AppendTag(b, 2, protowire.VarintType)
				b = protowire.AppendVarint(b, uint64(r.Result))
			}
			return b, nil
		}
	}
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}

// Unmarshal decodes b into m, replacing its contents. Unlike
// proto.Unmarshal it reuses a CalculateStreamRequest's Calculation, reset,
// rather than allocate another, and a CalculateStreamResponse's result
// wrapper: a caller that keeps either pointer past its next receive sees
// it change (the service's handler and calc-bench do not keep them).
func (Codec) Unmarshal(b []byte, m proto.Message) error {
	ok := false
	switch m := m.(type) {
	case *calculatorv1.CalculateRequest:
		m.Reset()
		ok = decodeCalculateRequest(b, m)
	case *calculatorv1.CalculateResponse:
		m.Reset()
		ok = decodeVarints(b, func(num protowire.Number, v uint64) bool {
			if num != 1 {
				return false
			}
			m.Result = int64(v)
			return true
		})
	case *calculatorv1.CalculateStreamRequest:
		calc := m.Calculation
		m.Reset()
		if calc != nil {
			calc.Reset()
		}
		ok = decodeStreamRequest(b, m, calc)
	case *calculatorv1.CalculateStreamResponse:
		spare, _ := m.Outcome.(*calculatorv1.CalculateStreamResponse_Result)
		m.Reset()
		ok = decodeVarints(b, func(num protowire.Number, v uint64) bool {
			switch num {
			case 1:
				m.Id = v
			case 2:
				if spare == nil {
					spare = new(calculatorv1.CalculateStreamResponse_Result)
				}
				spare.Result = int64(v)
				m.Outcome = spare
			default:
				return false
			}
			return true
		})
	}
	if ok {
		return nil
	}
	return proto.Unmarshal(b, m)
}

// fastStreamRequest reports whether the fast path encodes m.
func fastStreamRequest(m *calculatorv1.CalculateStreamRequest) bool {
	return len(m.ProtoReflect().GetUnknown()) == 0 && (m.Calculation == nil || len(m.Calculation.ProtoReflect().GetUnknown()) == 0)
}

// fastStreamResponse reports whether the fast path encodes m, and its
// result if it carries one.
func fastStreamResponse(m *calculatorv1.CalculateStreamResponse) (*calculatorv1.CalculateStreamResponse_Result, bool) {
	if len(m.ProtoReflect().GetUnknown()) != 0 {
		return nil, false
	}
	switch o := m.Outcome.(type) {
	case nil:
		return nil, true
	case *calculatorv1.CalculateStreamResponse_Result:
		return o, true
	}
	return nil, false
}

// sizeVarintField is the size of a varint field (number below 16) holding
// v, omitted when zero.
func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

// sizeMessageField is the size of a message field (number below 16) whose
// message is n bytes.
func sizeMessageField(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func sizeCalculateRequest(m *calculatorv1.CalculateRequest) int {
	return sizeVarintField(uint64(m.Operator)) + sizeVarintField(uint64(m.Lhs)) + sizeVarintField(uint64(m.Rhs))
}

// appendVarintField appends a varint field holding v unless v is zero.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendCalculateRequest(b []byte, m *calculatorv1.CalculateRequest) []byte {
	b = appendVarintField(b, 1, uint64(m.Operator))
	b = appendVarintField(b, 2, uint64(m.Lhs))
	return appendVarintField(b, 3, uint64(m.Rhs))
}

// decodeVarints walks b's fields, all of which must be varints that set
// accepts; it reports false at anything else.
func decodeVarints(b []byte, set func(protowire.Number, uint64) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.VarintType {
			return false
		}
		v, m := protowire.ConsumeVarint(b[n:])
		if m < 0 || !set(num, v) {
			return false
		}
		b = b[n+m:]
	}
	return true
}

// decodeCalculateRequest merges b's fields into m.
func decodeCalculateRequest(b []byte, m *calculatorv1.CalculateRequest) bool {
	return decodeVarints(b, func(num protowire.Number, v uint64) bool {
		switch num {
		case 1:
			m.Operator = calculatorv1.Operator(int32(v))
		case 2:
			m.Lhs = int64(v)
		case 3:
			m.Rhs = int64(v)
		default:
			return false
		}
		return true
	})
}

// decodeStreamRequest decodes b into m, whose Calculation, if b has one,
// is spare (reset) when not nil.
func decodeStreamRequest(b []byte, m *calculatorv1.CalculateStreamRequest, spare *calculatorv1.CalculateRequest) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			m.Id, b = v, b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			if m.Calculation == nil {
				m.Calculation = spare
				if spare == nil {
					m.Calculation = new(calculatorv1.CalculateRequest)
				}
			}
			if !decodeCalculateRequest(v, m.Calculation) { // a repeated message field merges
				return false
			}
			b = b[n:]
		default:
			return false
		}
	}
	return true
}
