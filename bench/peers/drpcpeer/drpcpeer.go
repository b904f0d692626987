// Package drpcpeer serves and calls calc's CalculatorService over
// storj.io/drpc, for the benchmarks. Its Description and receivers are
// written by hand in the shape protoc-gen-go-drpc generates (an encoding
// that marshals with google.golang.org/protobuf, a method expression per
// RPC), over the generated calculatorv1 messages; the service is
// server/calculator's, the very one calcd serves. Status codes travel as
// drpcerr codes, the gRPC code numbers.
//
// A drpc connection carries one call at a time: concurrent callers on one
// Conn wait for each other.
package drpcpeer

import (
	"context"
	"errors"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"storj.io/drpc"
	"storj.io/drpc/drpcconn"
	"storj.io/drpc/drpcerr"
	"storj.io/drpc/drpcmanager"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
	"storj.io/drpc/drpcstream"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
)

// Encoding marshals drpc messages with google.golang.org/protobuf, as
// protoc-gen-go-drpc's generated encoding does.
type Encoding struct{}

// Marshal returns msg's protobuf encoding.
func (Encoding) Marshal(msg drpc.Message) ([]byte, error) { return proto.Marshal(msg.(proto.Message)) }

// MarshalAppend appends msg's protobuf encoding to buf.
func (Encoding) MarshalAppend(buf []byte, msg drpc.Message) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(buf, msg.(proto.Message))
}

// Unmarshal decodes buf into msg.
func (Encoding) Unmarshal(buf []byte, msg drpc.Message) error {
	return proto.Unmarshal(buf, msg.(proto.Message))
}

// description is the drpc.Description of CalculatorService.
type description struct{}

func (description) NumMethods() int { return 3 }

func (description) Method(n int) (string, drpc.Encoding, drpc.Receiver, any, bool) {
	switch n {
	case 0:
		return calculatorv1.CalculatorService_Calculate_FullMethodName, Encoding{},
			func(srv any, ctx context.Context, in1, _ any) (drpc.Message, error) {
				resp, err := srv.(calculatorv1.CalculatorServiceServer).Calculate(ctx, in1.(*calculatorv1.CalculateRequest))
				return resp, codeErr(err)
			}, calculatorv1.CalculatorServiceServer.Calculate, true
	case 1:
		return calculatorv1.CalculatorService_Evaluate_FullMethodName, Encoding{},
			func(srv any, ctx context.Context, in1, _ any) (drpc.Message, error) {
				resp, err := srv.(calculatorv1.CalculatorServiceServer).Evaluate(ctx, in1.(*calculatorv1.EvaluateRequest))
				return resp, codeErr(err)
			}, calculatorv1.CalculatorServiceServer.Evaluate, true
	case 2:
		return calculatorv1.CalculatorService_CalculateStream_FullMethodName, Encoding{},
			func(srv any, _ context.Context, in1, _ any) (drpc.Message, error) {
				return nil, codeErr(srv.(calculatorv1.CalculatorServiceServer).CalculateStream(&serverStream{in1.(drpc.Stream)}))
			}, calculatorv1.CalculatorServiceServer.CalculateStream, true
	}
	return "", nil, nil, nil, false
}

// codeErr gives a handler's status error its code as a drpc error code.
func codeErr(err error) error {
	if err == nil {
		return nil
	}
	return drpcerr.WithCode(err, uint64(status.Code(err)))
}

// serverStream is a drpc stream as the service's CalculateStream handler
// takes it: a grpc.BidiStreamingServer.
type serverStream struct{ s drpc.Stream }

func (x *serverStream) Recv() (*calculatorv1.CalculateStreamRequest, error) {
	m := new(calculatorv1.CalculateStreamRequest)
	return m, x.RecvMsg(m)
}

func (x *serverStream) Send(m *calculatorv1.CalculateStreamResponse) error {
	return x.s.MsgSend(m, Encoding{})
}
func (x *serverStream) RecvMsg(m any) error          { return x.s.MsgRecv(m, Encoding{}) }
func (x *serverStream) SendMsg(m any) error          { return x.s.MsgSend(m, Encoding{}) }
func (x *serverStream) Context() context.Context     { return x.s.Context() }
func (x *serverStream) SetHeader(metadata.MD) error  { return nil }
func (x *serverStream) SendHeader(metadata.MD) error { return nil }
func (x *serverStream) SetTrailer(metadata.MD)       {}

var _ grpc.BidiStreamingServer[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse] = (*serverStream)(nil)

// Serve serves svc over drpc on lis until ctx ends; it then returns nil.
func Serve(ctx context.Context, lis net.Listener, svc calculatorv1.CalculatorServiceServer) error {
	mux := drpcmux.New()
	if err := mux.Register(svc, description{}); err != nil {
		return err
	}
	return drpcserver.New(mux).Serve(ctx, lis)
}

// Conn is a client connection to a drpc CalculatorService.
type Conn struct {
	c *drpcconn.Conn
}

// NewConn returns a Conn over nc. With manualFlush, stream messages are
// written only when Stream.Flush is called (so that a pipeline of them
// shares writes); unary calls are unaffected.
func NewConn(nc net.Conn, manualFlush bool) *Conn {
	return &Conn{c: drpcconn.NewWithOptions(nc, drpcconn.Options{
		Manager: drpcmanager.Options{Stream: drpcstream.Options{ManualFlush: manualFlush}},
	})}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Calculate makes a Calculate call, decoding its answer into resp. A
// failure is a gRPC status error.
func (c *Conn) Calculate(ctx context.Context, req *calculatorv1.CalculateRequest, resp *calculatorv1.CalculateResponse) error {
	return statusErr(c.c.Invoke(ctx, calculatorv1.CalculatorService_Calculate_FullMethodName, Encoding{}, req, resp))
}

// statusErr turns a drpc error into a gRPC status error: its drpcerr code
// is the status code; a context's end keeps its code; anything else is
// UNAVAILABLE.
func statusErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	if code := drpcerr.Code(err); code != 0 && code <= uint64(codes.Unauthenticated) {
		return status.Error(codes.Code(code), err.Error())
	}
	return status.Error(codes.Unavailable, err.Error())
}

// Stream is a CalculateStream call.
type Stream struct {
	s drpc.Stream
}

// CalculateStream opens a CalculateStream call.
func (c *Conn) CalculateStream(ctx context.Context) (*Stream, error) {
	s, err := c.c.NewStream(ctx, calculatorv1.CalculatorService_CalculateStream_FullMethodName, Encoding{})
	if err != nil {
		return nil, statusErr(err)
	}
	return &Stream{s: s}, nil
}

// Send sends a request (written at once, or at Flush with manualFlush).
func (s *Stream) Send(req *calculatorv1.CalculateStreamRequest) error {
	return statusErr(s.s.MsgSend(req, Encoding{}))
}

// Flush writes the requests Send has buffered.
func (s *Stream) Flush() error {
	if f, ok := s.s.(interface{ RawFlush() error }); ok {
		return statusErr(f.RawFlush())
	}
	return nil
}

// Recv receives the next response into resp; io.EOF after the server has
// ended the stream.
func (s *Stream) Recv(resp *calculatorv1.CalculateStreamResponse) error {
	err := s.s.MsgRecv(resp, Encoding{})
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return statusErr(err)
}

// CloseSend tells the server no request follows.
func (s *Stream) CloseSend() error { return statusErr(s.s.CloseSend()) }
