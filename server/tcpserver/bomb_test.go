package tcpserver_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// BenchmarkServerRejectsBomb compares, over a real loopback connection,
// what the server spends refusing a snappy bomb (a 23-byte block that
// claims 4 MiB, within the message limit) with what it spends on ordinary
// calls: the cheapest, Calculate (run inline), and Evaluate of a short
// expression. Each op is one call of a pipelined batch of 64, so ns/op is
// the server's work per call more than round trips. A bomb used to cost
// about 3 ms, some 900 calls; now it costs about what a call does.
func BenchmarkServerRejectsBomb(b *testing.B) {
	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	expr, _ := proto.Marshal(&calculatorv1.EvaluateRequest{Expression: "2 * (3 + 4)"})
	bomb := append([]byte{0x80, 0x80, 0x80, 0x02}, make([]byte, 19)...)
	for _, bc := range []struct {
		name   string
		method string
		flags  wire.Flags
		msg    []byte
		want   wire.Kind
		code   codes.Code
	}{
		{"calculate", calculate, 0, msg, wire.KindResponse, codes.OK},
		{"evaluate", "/calculator.v1.CalculatorService/Evaluate", 0, expr, wire.KindResponse, codes.OK},
		{"bomb", calculate, wire.FlagCompressed, bomb, wire.KindStatus, codes.ResourceExhausted},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := start(b, tcpserver.Options{})
			nc, rd := dial(b, srv.TCPAddr, true)
			const batch = 64
			var id uint32
			var frames []byte
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				frames = frames[:0]
				n := min(batch, b.N-done)
				for range n {
					id++
					frames = append(frames, request(id, bc.method, bc.flags, bc.msg)...)
				}
				if _, err := nc.Write(frames); err != nil {
					b.Fatal(err)
				}
				for range n {
					f, err := rd.ReadFrame()
					if err != nil {
						b.Fatal(err)
					}
					if bc.want == wire.KindResponse {
						if f.Kind != wire.KindResponse {
							b.Fatalf("got %v, want RESPONSE", f.Kind)
						}
						continue
					}
					if f.Kind != wire.KindStatus {
						b.Fatalf("got %v, want STATUS", f.Kind)
					}
					if f.ID == 1 { // the code once: parsing every status would bill the client's work to the bomb
						if st, _ := wire.ParseStatus(f.Payload); codes.Code(st.GetCode()) != bc.code {
							b.Fatalf("got %v, want %v", st, bc.code)
						}
					}
				}
			}
		})
	}
}
