package calccodec_test

import (
	"bytes"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calccodec"
)

// codecMessages make a fresh message of each type Codec has a fast path for,
// and one it has none for.
var codecMessages = []func() proto.Message{
	func() proto.Message { return new(calculatorv1.CalculateRequest) },
	func() proto.Message { return new(calculatorv1.CalculateResponse) },
	func() proto.Message { return new(calculatorv1.CalculateStreamRequest) },
	func() proto.Message { return new(calculatorv1.CalculateStreamResponse) },
	func() proto.Message { return new(calculatorv1.EvaluateRequest) },
}

// codecSeeds are messages whose encodings seed FuzzCodec and TestCodec.
var codecSeeds = []proto.Message{
	&calculatorv1.CalculateRequest{},
	&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 42, Rhs: 1},
	&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_POWER, Lhs: math.MinInt64, Rhs: -1},
	&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator(-3), Lhs: math.MaxInt64},
	&calculatorv1.CalculateResponse{Result: -5},
	&calculatorv1.CalculateResponse{},
	&calculatorv1.CalculateStreamRequest{Id: 77, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 76, Rhs: 1}},
	&calculatorv1.CalculateStreamRequest{Calculation: &calculatorv1.CalculateRequest{}},
	&calculatorv1.CalculateStreamRequest{Id: math.MaxUint64},
	&calculatorv1.CalculateStreamResponse{Id: 9, Outcome: &calculatorv1.CalculateStreamResponse_Result{Result: 0}},
	&calculatorv1.CalculateStreamResponse{Id: 9, Outcome: &calculatorv1.CalculateStreamResponse_Result{Result: -1}},
	&calculatorv1.CalculateStreamResponse{Id: 3, Outcome: &calculatorv1.CalculateStreamResponse_Error{Error: &calculatorv1.CalculationError{Code: 3, Message: "division by zero", Field: "rhs"}}},
	&calculatorv1.CalculateStreamResponse{},
	&calculatorv1.EvaluateRequest{Expression: "1 + 2"},
}

// codecOddInputs are encodings protobuf-go accepts or refuses that the fast
// path does not expect: unknown fields, a repeated message field (merged),
// a field's wrong wire type, truncations.
func codecOddInputs() [][]byte {
	var unknown []byte
	unknown = protowire.AppendTag(unknown, 1, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 5)
	unknown = protowire.AppendTag(unknown, 9, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("x"))
	var merged []byte
	merged = protowire.AppendTag(merged, 2, protowire.BytesType)
	merged = protowire.AppendBytes(merged, []byte{0x08, 0x01, 0x10, 0x05})
	merged = protowire.AppendTag(merged, 2, protowire.BytesType)
	merged = protowire.AppendBytes(merged, []byte{0x18, 0x07})
	var wrongType []byte
	wrongType = protowire.AppendTag(wrongType, 1, protowire.Fixed64Type)
	wrongType = protowire.AppendFixed64(wrongType, 1)
	return [][]byte{unknown, merged, wrongType, {0x08}, {0x08, 0x80}, {0x12, 0x05, 0x08}, {0x10, 0x01, 0x10, 0x02}, {}}
}

// checkCodec holds Codec to protobuf-go on data, for every message type:
// the same decoding or the same refusal, and re-encoded, the same bytes.
func checkCodec(t *testing.T, data []byte) {
	t.Helper()
	var c calccodec.Codec
	for _, newMsg := range codecMessages {
		got, want := newMsg(), newMsg()
		gerr, werr := c.Unmarshal(data, got), proto.Unmarshal(data, want)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%T from %x: Codec says %v, protobuf-go %v", got, data, gerr, werr)
		}
		if werr != nil {
			continue
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%T from %x: Codec decodes %v, protobuf-go %v", got, data, got, want)
		}
		// Again into a message that held another, whose parts Codec
		// may reuse: nothing of the old one may show through.
		used := newMsg()
		full, _ := proto.Marshal(&calculatorv1.CalculateStreamRequest{Id: 5, Calculation: &calculatorv1.CalculateRequest{Operator: 4, Lhs: 6, Rhs: 7}})
		switch used.(type) {
		case *calculatorv1.CalculateStreamRequest:
			if err := c.Unmarshal(full, used); err != nil {
				t.Fatal(err)
			}
		case *calculatorv1.CalculateStreamResponse:
			old, _ := proto.Marshal(&calculatorv1.CalculateStreamResponse{Id: 8, Outcome: &calculatorv1.CalculateStreamResponse_Result{Result: 9}})
			if err := c.Unmarshal(old, used); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Unmarshal(data, used); err != nil || !proto.Equal(used, want) {
			t.Fatalf("%T from %x into a used message: Codec decodes %v (%v), protobuf-go %v", used, data, used, err, want)
		}
		wantBytes, err := proto.MarshalOptions{}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		gotBytes, err := c.MarshalAppend([]byte("prefix"), want)
		if err != nil || !bytes.Equal(gotBytes[6:], wantBytes) || string(gotBytes[:6]) != "prefix" {
			t.Fatalf("%T %v: Codec encodes %x (%v), protobuf-go %x", want, want, gotBytes, err, wantBytes)
		}
		if n := c.Size(want); n != len(wantBytes) {
			t.Fatalf("%T %v: Codec.Size %d, encoded %d bytes", want, want, n, len(wantBytes))
		}
	}
}

// TestCodec checks the seeds and the odd inputs against protobuf-go.
func TestCodec(t *testing.T) {
	for _, m := range codecSeeds {
		data, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		checkCodec(t, data)
	}
	for _, data := range codecOddInputs() {
		checkCodec(t, data)
	}
	// A message the fast path skips because it holds unknown fields.
	m := &calculatorv1.CalculateStreamRequest{Id: 1}
	m.ProtoReflect().SetUnknown(protowire.AppendTag(nil, 15, protowire.VarintType))
	m.ProtoReflect().SetUnknown(protowire.AppendVarint(m.ProtoReflect().GetUnknown(), 1))
	want, _ := proto.Marshal(m)
	if got, err := (calccodec.Codec{}).MarshalAppend(nil, m); err != nil || !bytes.Equal(got, want) {
		t.Errorf("with unknown fields: %x, %v; want %x", got, err, want)
	}
}

// FuzzCodec holds Codec to protobuf-go on any input.
func FuzzCodec(f *testing.F) {
	for _, m := range codecSeeds {
		data, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, data := range codecOddInputs() {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkCodec(t, data) })
}

// BenchmarkCodec compares a streamed calculation's decode and encode by
// Codec and by protobuf-go.
func BenchmarkCodec(b *testing.B) {
	req, _ := proto.Marshal(&calculatorv1.CalculateStreamRequest{Id: 77, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 76, Rhs: 1}})
	resp := &calculatorv1.CalculateStreamResponse{Id: 77, Outcome: &calculatorv1.CalculateStreamResponse_Result{Result: 77}}
	in := new(calculatorv1.CalculateStreamRequest)
	buf := make([]byte, 0, 64)
	b.Run("codec", func(b *testing.B) {
		var c calccodec.Codec
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Unmarshal(req, in); err != nil {
				b.Fatal(err)
			}
			_ = c.Size(resp)
			buf, _ = c.MarshalAppend(buf[:0], resp)
		}
	})
	b.Run("protobuf-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(req, in); err != nil {
				b.Fatal(err)
			}
			_ = proto.Size(resp)
			buf, _ = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf[:0], resp)
		}
	})
}
