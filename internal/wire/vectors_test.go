package wire_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/wire/vectors.json from the definitions in this file")

const vectorsPath = "../../testdata/wire/vectors.json"

// vectorFile is the layout of testdata/wire/vectors.json, read by every
// language's tests.
type vectorFile struct {
	About   []string `json:"about"`
	Vectors []vector `json:"vectors"`
}

type vector struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Preface     bool    `json:"preface,omitempty"`
	Limits      *limits `json:"limits,omitempty"`
	Hex         string  `json:"hex"`
	Version     int     `json:"version,omitempty"`
	Frames      []frame `json:"frames,omitempty"`
	Error       string  `json:"error,omitempty"`
	Server      server  `json:"server"`
}

type limits struct {
	MaxFrameSize   int `json:"max_frame_size,omitempty"`
	MaxMessageSize int `json:"max_message_size,omitempty"`
}

type frame struct {
	Kind         string          `json:"kind"`
	Flags        int             `json:"flags"`
	ID           uint32          `json:"id"`
	MethodRef    uint32          `json:"method_ref,omitempty"`
	MethodName   string          `json:"method_name,omitempty"`
	TimeoutUs    *int64          `json:"timeout_us,omitempty"`
	Metadata     [][2]string     `json:"metadata,omitempty"`
	MessageType  string          `json:"message_type,omitempty"`
	Message      json.RawMessage `json:"message,omitempty"`
	MessageError string          `json:"message_error,omitempty"`
	Status       *status         `json:"status,omitempty"`
	LastID       *uint32         `json:"last_id,omitempty"`
	Settings     map[string]int  `json:"settings,omitempty"`
	PingHex      string          `json:"ping_hex,omitempty"`
}

type status struct {
	Code        int32    `json:"code"`
	Message     string   `json:"message,omitempty"`
	DetailTypes []string `json:"detail_types,omitempty"`
}

// server says what calcd does with the vector's bytes.
type server struct {
	Answer string `json:"answer"`
	Code   *int   `json:"code,omitempty"`
	Closes bool   `json:"closes"`
}

func code(c int) *int { return &c }

// serverOnly is calcd's answer to a frame only a server may send.
var serverOnly = server{Answer: "GOAWAY", Code: code(3), Closes: true}

// errorNames maps the package's errors to the names the vectors use.
var errorNames = map[error]string{
	wire.ErrBadMagic:        "BAD_MAGIC",
	wire.ErrFrameTooLarge:   "FRAME_TOO_LARGE",
	wire.ErrFrameTooSmall:   "FRAME_TOO_SMALL",
	wire.ErrUnknownKind:     "UNKNOWN_KIND",
	wire.ErrTruncated:       "TRUNCATED",
	wire.ErrMessageTooLarge: "MESSAGE_TOO_LARGE",
	wire.ErrCorruptMessage:  "CORRUPT_MESSAGE",
	wire.ErrBadHeader:       "BAD_HEADER",
}

func errorName(err error) string {
	for e, name := range errorNames {
		if errors.Is(err, e) {
			return name
		}
	}
	return "OTHER: " + err.Error()
}

const (
	methodCalculate = "/calculator.v1.CalculatorService/Calculate"
	methodEvaluate  = "/calculator.v1.CalculatorService/Evaluate"
	methodStream    = "/calculator.v1.CalculatorService/CalculateStream"
)

// methodTypes gives each method's request and response message types.
var methodTypes = map[string][2]string{
	methodCalculate: {"calculator.v1.CalculateRequest", "calculator.v1.CalculateResponse"},
	methodEvaluate:  {"calculator.v1.EvaluateRequest", "calculator.v1.EvaluateResponse"},
	methodStream:    {"calculator.v1.CalculateStreamRequest", "calculator.v1.CalculateStreamResponse"},
}

// TestVectors decodes every vector with the wire package and compares the
// result with the vector's decoded meaning. Run with -update to rewrite
// the file from definitions().
func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var file vectorFile
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) < 20 {
		t.Fatalf("only %d vectors", len(file.Vectors))
	}
	for _, v := range file.Vectors {
		t.Run(v.Name, func(t *testing.T) { checkVector(t, v) })
	}
}

func checkVector(t *testing.T, v vector) {
	raw, err := hex.DecodeString(v.Hex)
	if err != nil {
		t.Fatal(err)
	}
	if v.Preface {
		version, _, err := wire.ReadPreface(bytes.NewReader(raw))
		switch {
		case v.Error != "":
			if err == nil || errorName(err) != v.Error {
				t.Fatalf("ReadPreface error = %v, want %s", err, v.Error)
			}
		case err != nil:
			t.Fatal(err)
		case int(version) != v.Version:
			t.Fatalf("version %d, want %d", version, v.Version)
		}
		return
	}
	lim := limits{MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: wire.DefaultMaxMessageSize}
	if v.Limits != nil {
		lim = *v.Limits
	}
	r := wire.NewReader(bytes.NewReader(raw), lim.MaxFrameSize)
	bound := map[uint32]string{}
	for i := 0; ; i++ {
		f, err := r.ReadFrame()
		if err != nil {
			if v.Error == "" && err.Error() == "EOF" && i == len(v.Frames) {
				return
			}
			if v.Error != "" && i == len(v.Frames) && errorName(err) == v.Error {
				return
			}
			t.Fatalf("frame %d: ReadFrame error %v; want %d frames then error %q", i, err, len(v.Frames), v.Error)
		}
		if i >= len(v.Frames) {
			t.Fatalf("more than %d frames", len(v.Frames))
		}
		checkFrame(t, v.Frames[i], f, lim, bound)
	}
}

func checkFrame(t *testing.T, want frame, f wire.Frame, lim limits, bound map[uint32]string) {
	t.Helper()
	if f.Kind.String() != want.Kind || int(f.Flags) != want.Flags || f.ID != want.ID {
		t.Fatalf("frame %s flags %d id %d, want %s %d %d", f.Kind, f.Flags, f.ID, want.Kind, want.Flags, want.ID)
	}
	msgBytes := f.Payload
	msgType := ""
	switch f.Kind {
	case wire.KindRequest:
		var h wire.RequestHeader
		rest, err := wire.ParseRequestHeader(f.Flags, f.Payload, &h)
		if err != nil {
			t.Fatal(err)
		}
		if h.MethodName != "" {
			bound[h.MethodRef] = h.MethodName
		}
		if h.MethodRef != want.MethodRef || h.MethodName != want.MethodName {
			t.Fatalf("method %d %q, want %d %q", h.MethodRef, h.MethodName, want.MethodRef, want.MethodName)
		}
		if (want.TimeoutUs == nil) != !h.HasTimeout || (h.HasTimeout && h.Timeout != time.Duration(*want.TimeoutUs)*time.Microsecond) {
			t.Fatalf("timeout %v %v, want %v", h.HasTimeout, h.Timeout, want.TimeoutUs)
		}
		var md [][2]string
		for i := 0; i+1 < len(h.Metadata); i += 2 {
			md = append(md, [2]string{h.Metadata[i], h.Metadata[i+1]})
		}
		if len(md) != len(want.Metadata) || (len(md) > 0 && !equalPairs(md, want.Metadata)) {
			t.Fatalf("metadata %v, want %v", md, want.Metadata)
		}
		msgBytes = rest
		if types, ok := methodTypes[bound[h.MethodRef]]; ok && bound[h.MethodRef] != methodStream {
			msgType = types[0]
		}
	case wire.KindMessage, wire.KindResponse:
		msgType = want.MessageType // the direction, known to a real peer, decides the type
	case wire.KindStatus:
		st, err := wire.ParseStatus(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		checkStatus(t, st, want.Status)
		return
	case wire.KindGoAway:
		last, st, err := wire.ParseGoAway(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if want.LastID == nil || last != *want.LastID {
			t.Fatalf("last id %d, want %v", last, want.LastID)
		}
		checkStatus(t, st, want.Status)
		return
	case wire.KindSettings:
		s, err := wire.ParseSettings(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		got := settingsMap(s)
		for k, v := range want.Settings {
			if got[k] != v {
				t.Fatalf("settings %v, want %v", got, want.Settings)
			}
		}
		return
	case wire.KindPing, wire.KindPong:
		if hex.EncodeToString(f.Payload) != want.PingHex {
			t.Fatalf("ping payload %x, want %s", f.Payload, want.PingHex)
		}
		return
	default:
		if len(f.Payload) != 0 {
			t.Fatalf("%s payload %x, want empty", f.Kind, f.Payload)
		}
		return
	}
	if msgType != want.MessageType {
		t.Fatalf("message type %q, want %q", msgType, want.MessageType)
	}
	msg, err := wire.DecodeMessage(nil, msgBytes, f.Flags, lim.MaxMessageSize)
	if err != nil {
		if errorName(err) != want.MessageError {
			t.Fatalf("message error %v, want %s", err, want.MessageError)
		}
		return
	}
	if msgType == "" {
		if len(msg) != 0 || want.MessageError != "" {
			t.Fatalf("message %x for an unknown method; want error %q", msg, want.MessageError)
		}
		return
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(msgType))
	if err != nil {
		t.Fatal(err)
	}
	got := mt.New().Interface()
	if err := proto.Unmarshal(msg, got); err != nil {
		if want.MessageError != "INVALID_PROTOBUF" {
			t.Fatalf("unmarshal: %v, want message error %q", err, want.MessageError)
		}
		return
	}
	if want.MessageError != "" {
		t.Fatalf("message decoded, want error %s", want.MessageError)
	}
	wantMsg := mt.New().Interface()
	if err := protojson.Unmarshal(want.Message, wantMsg); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, wantMsg) {
		t.Fatalf("message %v, want %v", got, wantMsg)
	}
}

func equalPairs(a, b [][2]string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func checkStatus(t *testing.T, st *spb.Status, want *status) {
	t.Helper()
	if want == nil {
		want = &status{}
	}
	var types []string
	for _, d := range st.GetDetails() {
		types = append(types, d.GetTypeUrl())
	}
	if st.GetCode() != want.Code || st.GetMessage() != want.Message || strings.Join(types, ",") != strings.Join(want.DetailTypes, ",") {
		t.Fatalf("status %v, want %+v", st, want)
	}
}

func settingsMap(s wire.Settings) map[string]int {
	return map[string]int{
		"MAX_FRAME_SIZE":       int(s.MaxFrameSize),
		"MAX_MESSAGE_SIZE":     int(s.MaxMessageSize),
		"COMPRESS_THRESHOLD":   int(s.CompressThreshold),
		"MAX_CONCURRENT_CALLS": int(s.MaxConcurrentCalls),
		"IDLE_TIMEOUT_MILLIS":  int(s.IdleTimeout.Milliseconds()),
	}
}

// writeVectors regenerates the vectors file from definitions().
func writeVectors(t *testing.T) {
	file := vectorFile{
		About: []string{
			"Test vectors for calc's raw TCP protocol v1 (PROTOCOL.md). Each vector's hex is a byte stream: a client preface when preface is true, else frames.",
			"Decode the frames in order with the given limits (defaults: max_frame_size 4210688, max_message_size 4194304); expect exactly `frames`, then end of input, or `error` after the listed frames.",
			"Errors: BAD_MAGIC, FRAME_TOO_LARGE, FRAME_TOO_SMALL, UNKNOWN_KIND, TRUNCATED. message_error is the error decoding a frame's message: MESSAGE_TOO_LARGE, CORRUPT_MESSAGE, INVALID_PROTOBUF.",
			"Compare messages by value: parse `message` (protobuf JSON) into message_type and compare with the decoded protobuf. Never compare re-encoded bytes: protobuf and snappy encodings are not canonical.",
			"Method refs bind across the frames of one vector; message_type of a REQUEST follows from its method. `server` is what calcd, configured with the vector's limits, answers to these bytes sent by a client after its preface (a frame only servers send is a protocol error), and whether it closes the connection.",
		},
		Vectors: definitions(t),
	}
	data, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsPath, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonOf(t *testing.T, m proto.Message) json.RawMessage {
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any // normalize protojson's unstable spacing
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return out
}

func request(h wire.RequestHeader, id uint32, msg []byte, threshold int) []byte {
	p, flags := wire.AppendRequestHeader(nil, &h)
	p, mflags := wire.AppendMessage(p, msg, threshold)
	return wire.AppendFrame(nil, wire.KindRequest, flags|mflags, id, p)
}

func u32(v uint32) *uint32 { return &v }
func i64(v int64) *int64   { return &v }

func definitions(t *testing.T) []vector {
	add := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
	addMsg := mustMarshal(t, add)
	five := &calculatorv1.CalculateResponse{Result: 5}
	longExpr := &calculatorv1.EvaluateRequest{Expression: strings.Repeat("1 + ", 99) + "1"}
	// atThreshold is an EvaluateRequest of exactly 256 encoded bytes (tag, 2-byte length, 253 bytes).
	atThreshold := &calculatorv1.EvaluateRequest{Expression: strings.Repeat("2 * ", 63) + "2"}
	belowThreshold := &calculatorv1.EvaluateRequest{Expression: strings.Repeat("2 * ", 63)[:252]}
	if n := proto.Size(atThreshold); n != 256 {
		t.Fatalf("atThreshold is %d bytes", n)
	}
	if n := proto.Size(belowThreshold); n != 255 {
		t.Fatalf("belowThreshold is %d bytes", n)
	}
	divSt, _ := anypb.New(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "rhs", Description: "division by zero: 1 / 0", Reason: "DIVISION_BY_ZERO"}}})
	streamReq := &calculatorv1.CalculateStreamRequest{Id: 7, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_MULTIPLY, Lhs: 6, Rhs: 7}}
	streamResp := &calculatorv1.CalculateStreamResponse{Id: 7, Outcome: &calculatorv1.CalculateStreamResponse_Result{Result: 42}}
	settings := wire.Settings{MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: wire.DefaultMaxMessageSize, CompressThreshold: wire.DefaultCompressThreshold, MaxConcurrentCalls: 1024, IdleTimeout: 5 * time.Minute}
	bomb := []byte{0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x61} // claims 1 GiB decoded
	ok := server{Answer: "RESPONSE"}
	cat := func(parts ...[]byte) string { return hex.EncodeToString(bytes.Join(parts, nil)) }
	bindCalc := wire.RequestHeader{MethodRef: 1, MethodName: methodCalculate}
	return []vector{
		{Name: "preface", Description: "the client preface: magic CALC and version 1", Preface: true, Hex: cat(wire.AppendPreface(nil)), Version: 1, Server: server{Answer: "SETTINGS"}},
		{Name: "preface_version_2", Description: "a preface with an unsupported version", Preface: true, Hex: "43414c4302", Version: 2, Server: server{Answer: "GOAWAY", Code: code(9), Closes: true}},
		{Name: "bad_magic_http", Description: "an HTTP/1.1 request sent to the raw TCP port", Preface: true, Hex: cat([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")), Error: "BAD_MAGIC", Server: server{Answer: "HTTP_400", Closes: true}},
		{Name: "bad_magic_tls", Description: "the start of a TLS ClientHello", Preface: true, Hex: "160301020001", Error: "BAD_MAGIC", Server: server{Answer: "NOTHING", Closes: true}},
		{Name: "settings", Description: "the server's SETTINGS frame with calcd's defaults", Hex: cat(wire.AppendFrame(nil, wire.KindSettings, 0, 0, wire.AppendSettings(nil, settings))),
			Frames: []frame{{Kind: "SETTINGS", Settings: settingsMap(settings)}}, Server: serverOnly},
		{Name: "calculate_first_call", Description: "Calculate(ADD, 2, 3) binding method ref 1 to its name", Hex: cat(request(bindCalc, 1, addMsg, 256)),
			Frames: []frame{{Kind: "REQUEST", Flags: 2, ID: 1, MethodRef: 1, MethodName: methodCalculate, MessageType: "calculator.v1.CalculateRequest", Message: jsonOf(t, add)}}, Server: ok},
		{Name: "calculate_pipelined", Description: "three Calculate calls in one write: binding, with a 250 ms deadline, ref only", Hex: cat(
			request(bindCalc, 1, addMsg, 256),
			request(wire.RequestHeader{MethodRef: 1, HasTimeout: true, Timeout: 250 * time.Millisecond}, 2, addMsg, 256),
			request(wire.RequestHeader{MethodRef: 1}, 3, addMsg, 256)),
			Frames: []frame{
				{Kind: "REQUEST", Flags: 2, ID: 1, MethodRef: 1, MethodName: methodCalculate, MessageType: "calculator.v1.CalculateRequest", Message: jsonOf(t, add)},
				{Kind: "REQUEST", Flags: 4, ID: 2, MethodRef: 1, TimeoutUs: i64(250000), MessageType: "calculator.v1.CalculateRequest", Message: jsonOf(t, add)},
				{Kind: "REQUEST", Flags: 0, ID: 3, MethodRef: 1, MessageType: "calculator.v1.CalculateRequest", Message: jsonOf(t, add)},
			}, Server: ok},
		{Name: "calculate_metadata", Description: "a Calculate call carrying metadata, as gRPC metadata", Hex: cat(request(wire.RequestHeader{MethodRef: 1, MethodName: methodCalculate, Metadata: []string{"authorization", "Bearer t0ken", "trace-bin", "\x00\x01"}}, 1, addMsg, 256)),
			Frames: []frame{{Kind: "REQUEST", Flags: 10, ID: 1, MethodRef: 1, MethodName: methodCalculate, Metadata: [][2]string{{"authorization", "Bearer t0ken"}, {"trace-bin", "\x00\x01"}}, MessageType: "calculator.v1.CalculateRequest", Message: jsonOf(t, add)}}, Server: ok},
		{Name: "calculate_response", Description: "the server's answer CalculateResponse{result: 5} to call 3", Hex: cat(wire.AppendFrame(nil, wire.KindResponse, 0, 3, mustMarshal(t, five))),
			Frames: []frame{{Kind: "RESPONSE", ID: 3, MessageType: "calculator.v1.CalculateResponse", Message: jsonOf(t, five)}}, Server: serverOnly},
		{Name: "status_division_by_zero", Description: "a STATUS frame: INVALID_ARGUMENT with a BadRequest detail", Hex: cat(wire.AppendFrame(nil, wire.KindStatus, 0, 4, wire.AppendStatus(nil, &spb.Status{Code: 3, Message: "division by zero: 1 / 0", Details: []*anypb.Any{divSt}}))),
			Frames: []frame{{Kind: "STATUS", ID: 4, Status: &status{Code: 3, Message: "division by zero: 1 / 0", DetailTypes: []string{"type.googleapis.com/google.rpc.BadRequest"}}}}, Server: serverOnly},
		{Name: "evaluate_compressed", Description: "an Evaluate request whose 401-byte expression is sent snappy-compressed", Hex: cat(request(wire.RequestHeader{MethodRef: 2, MethodName: methodEvaluate}, 1, mustMarshal(t, longExpr), 256)),
			Frames: []frame{{Kind: "REQUEST", Flags: 3, ID: 1, MethodRef: 2, MethodName: methodEvaluate, MessageType: "calculator.v1.EvaluateRequest", Message: jsonOf(t, longExpr)}}, Server: ok},
		{Name: "compress_at_threshold", Description: "a 256-byte message, exactly the threshold: compressed", Hex: cat(request(wire.RequestHeader{MethodRef: 2, MethodName: methodEvaluate}, 1, mustMarshal(t, atThreshold), 256)),
			Frames: []frame{{Kind: "REQUEST", Flags: 3, ID: 1, MethodRef: 2, MethodName: methodEvaluate, MessageType: "calculator.v1.EvaluateRequest", Message: jsonOf(t, atThreshold)}}, Server: ok},
		{Name: "compress_below_threshold", Description: "a 255-byte message, one under the threshold: sent as is", Hex: cat(request(wire.RequestHeader{MethodRef: 2, MethodName: methodEvaluate}, 1, mustMarshal(t, belowThreshold), 256)),
			Frames: []frame{{Kind: "REQUEST", Flags: 2, ID: 1, MethodRef: 2, MethodName: methodEvaluate, MessageType: "calculator.v1.EvaluateRequest", Message: jsonOf(t, belowThreshold)}}, Server: server{Answer: "STATUS", Code: code(3)}},
		{Name: "max_frame_size", Description: "with max_frame_size 64, a frame whose length is exactly 64 is accepted", Limits: &limits{MaxFrameSize: 64, MaxMessageSize: 64},
			Hex:    cat(wire.AppendFrame(nil, wire.KindPing, 0, 0, make([]byte, 58))),
			Frames: []frame{{Kind: "PING", PingHex: strings.Repeat("00", 58)}}, Server: server{Answer: "PONG"}},
		{Name: "oversize_frame", Description: "with max_frame_size 64, a frame of length 65 is rejected before its payload is read", Limits: &limits{MaxFrameSize: 64, MaxMessageSize: 64},
			Hex: cat(wire.AppendFrame(nil, wire.KindPing, 0, 0, make([]byte, 59))), Error: "FRAME_TOO_LARGE", Server: server{Answer: "GOAWAY", Code: code(8), Closes: true}},
		{Name: "length_ffffffff", Description: "a length prefix of 0xFFFFFFFF and nothing else", Hex: "ffffffff", Error: "FRAME_TOO_LARGE", Server: server{Answer: "GOAWAY", Code: code(8), Closes: true}},
		{Name: "frame_too_small", Description: "a length prefix smaller than the 6-byte header", Hex: "0000000302000000", Error: "FRAME_TOO_SMALL", Server: server{Answer: "GOAWAY", Code: code(3), Closes: true}},
		{Name: "truncated", Description: "a REQUEST frame cut off mid-payload, then end of stream", Hex: cat(request(bindCalc, 1, addMsg, 256))[:40], Error: "TRUNCATED", Server: server{Answer: "NOTHING", Closes: true}},
		{Name: "corrupt_snappy", Description: "a compressed Calculate message that is not a valid snappy block", Hex: cat(wire.AppendFrame(nil, wire.KindRequest, wire.FlagMethodName|wire.FlagCompressed, 1, append(must(wire.AppendRequestHeader(nil, &bindCalc)), 0x0a, 0xff, 0xff, 0xff))),
			Frames: []frame{{Kind: "REQUEST", Flags: 3, ID: 1, MethodRef: 1, MethodName: methodCalculate, MessageType: "calculator.v1.CalculateRequest", MessageError: "CORRUPT_MESSAGE"}}, Server: server{Answer: "STATUS", Code: code(3)}},
		{Name: "snappy_bomb", Description: "a 7-byte snappy block claiming a 1 GiB decoded length", Hex: cat(wire.AppendFrame(nil, wire.KindRequest, wire.FlagMethodName|wire.FlagCompressed, 1, append(must(wire.AppendRequestHeader(nil, &bindCalc)), bomb...))),
			Frames: []frame{{Kind: "REQUEST", Flags: 3, ID: 1, MethodRef: 1, MethodName: methodCalculate, MessageType: "calculator.v1.CalculateRequest", MessageError: "MESSAGE_TOO_LARGE"}}, Server: server{Answer: "STATUS", Code: code(8)}},
		{Name: "invalid_protobuf", Description: "a Calculate request whose message is not valid protobuf", Hex: cat(request(bindCalc, 1, []byte{0xff, 0xff, 0xff}, 256)),
			Frames: []frame{{Kind: "REQUEST", Flags: 2, ID: 1, MethodRef: 1, MethodName: methodCalculate, MessageType: "calculator.v1.CalculateRequest", MessageError: "INVALID_PROTOBUF"}}, Server: server{Answer: "STATUS", Code: code(3)}},
		{Name: "unknown_method", Description: "a well-formed REQUEST for a method the server does not have", Hex: cat(request(wire.RequestHeader{MethodRef: 1, MethodName: "/calculator.v1.CalculatorService/SquareRoot"}, 1, nil, 256)),
			Frames: []frame{{Kind: "REQUEST", Flags: 2, ID: 1, MethodRef: 1, MethodName: "/calculator.v1.CalculatorService/SquareRoot"}}, Server: server{Answer: "STATUS", Code: code(12)}},
		{Name: "unknown_kind", Description: "a frame of kind 0x42, which protocol v1 does not define", Hex: cat(wire.AppendFrame(nil, wire.Kind(0x42), 0, 1, []byte{1, 2, 3})), Error: "UNKNOWN_KIND", Server: server{Answer: "GOAWAY", Code: code(3), Closes: true}},
		{Name: "stream_client", Description: "a CalculateStream call: REQUEST with no message, one MESSAGE, HALF_CLOSE", Hex: cat(
			request(wire.RequestHeader{MethodRef: 3, MethodName: methodStream}, 5, nil, 256),
			wire.AppendFrame(nil, wire.KindMessage, 0, 5, mustMarshal(t, streamReq)),
			wire.AppendFrame(nil, wire.KindHalfClose, 0, 5, nil)),
			Frames: []frame{
				{Kind: "REQUEST", Flags: 2, ID: 5, MethodRef: 3, MethodName: methodStream},
				{Kind: "MESSAGE", ID: 5, MessageType: "calculator.v1.CalculateStreamRequest", Message: jsonOf(t, streamReq)},
				{Kind: "HALF_CLOSE", ID: 5},
			}, Server: server{Answer: "MESSAGE"}},
		{Name: "stream_server", Description: "the server's side of that stream: one MESSAGE, then STATUS OK (empty payload)", Hex: cat(
			wire.AppendFrame(nil, wire.KindMessage, 0, 5, mustMarshal(t, streamResp)),
			wire.AppendFrame(nil, wire.KindStatus, 0, 5, nil)),
			Frames: []frame{
				{Kind: "MESSAGE", ID: 5, MessageType: "calculator.v1.CalculateStreamResponse", Message: jsonOf(t, streamResp)},
				{Kind: "STATUS", ID: 5, Status: &status{}},
			}, Server: serverOnly},
		{Name: "ping_pong_cancel", Description: "a PING, a PONG and a CANCEL of call 9", Hex: cat(
			wire.AppendFrame(nil, wire.KindPing, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, 42}),
			wire.AppendFrame(nil, wire.KindPong, 0, 0, []byte{0, 0, 0, 0, 0, 0, 0, 42}),
			wire.AppendFrame(nil, wire.KindCancel, 0, 9, nil)),
			Frames: []frame{{Kind: "PING", PingHex: "000000000000002a"}, {Kind: "PONG", PingHex: "000000000000002a"}, {Kind: "CANCEL", ID: 9}}, Server: server{Answer: "PONG"}},
		{Name: "goaway", Description: "a graceful GOAWAY: calls up to 7 will be answered", Hex: cat(wire.AppendFrame(nil, wire.KindGoAway, 0, 0, wire.AppendGoAway(nil, 7, &spb.Status{Message: "server shutting down"}))),
			Frames: []frame{{Kind: "GOAWAY", LastID: u32(7), Status: &status{Message: "server shutting down"}}}, Server: serverOnly},
	}
}

func must(b []byte, _ wire.Flags) []byte { return b }
