// Package connectpeer serves and calls calc's CalculatorService with
// connectrpc.com/connect over HTTP/2 without TLS (h2c, prior knowledge),
// for the benchmarks. Its handlers and clients are written by hand over
// the generated calculatorv1 messages with connect's generic
// NewUnaryHandler, NewBidiStreamHandler and NewClient, which is what
// protoc-gen-connect-go's output calls; the service is
// server/calculator's, the very one calcd serves. Calls use the Connect
// protocol (connect's default) with binary protobuf.
package connectpeer

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
)

// Handler returns the http.Handler serving svc's methods at their
// procedure paths ("/calculator.v1.CalculatorService/Calculate", …).
func Handler(svc calculatorv1.CalculatorServiceServer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(calculatorv1.CalculatorService_Calculate_FullMethodName, connect.NewUnaryHandler(calculatorv1.CalculatorService_Calculate_FullMethodName,
		func(ctx context.Context, req *connect.Request[calculatorv1.CalculateRequest]) (*connect.Response[calculatorv1.CalculateResponse], error) {
			resp, err := svc.Calculate(ctx, req.Msg)
			if err != nil {
				return nil, connectErr(err)
			}
			return connect.NewResponse(resp), nil
		}))
	mux.Handle(calculatorv1.CalculatorService_Evaluate_FullMethodName, connect.NewUnaryHandler(calculatorv1.CalculatorService_Evaluate_FullMethodName,
		func(ctx context.Context, req *connect.Request[calculatorv1.EvaluateRequest]) (*connect.Response[calculatorv1.EvaluateResponse], error) {
			resp, err := svc.Evaluate(ctx, req.Msg)
			if err != nil {
				return nil, connectErr(err)
			}
			return connect.NewResponse(resp), nil
		}))
	mux.Handle(calculatorv1.CalculatorService_CalculateStream_FullMethodName, connect.NewBidiStreamHandler(calculatorv1.CalculatorService_CalculateStream_FullMethodName,
		func(ctx context.Context, s *connect.BidiStream[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse]) error {
			return connectErr(svc.CalculateStream(&serverStream{ctx: ctx, s: s}))
		}))
	return mux
}

// connectErr turns a gRPC status error into a connect error of the same
// code (connect's codes are gRPC's numbers).
func connectErr(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	return connect.NewError(connect.Code(st.Code()), errors.New(st.Message()))
}

// serverStream is a connect bidi stream as the service's CalculateStream
// handler takes it: a grpc.BidiStreamingServer.
type serverStream struct {
	ctx context.Context
	s   *connect.BidiStream[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse]
}

func (x *serverStream) Recv() (*calculatorv1.CalculateStreamRequest, error) { return x.s.Receive() }
func (x *serverStream) Send(m *calculatorv1.CalculateStreamResponse) error  { return x.s.Send(m) }
func (x *serverStream) SendMsg(m any) error                                 { return x.s.Conn().Send(m) }
func (x *serverStream) Context() context.Context                            { return x.ctx }
func (x *serverStream) SetHeader(metadata.MD) error                         { return nil }
func (x *serverStream) SendHeader(metadata.MD) error                        { return nil }
func (x *serverStream) SetTrailer(metadata.MD)                              {}

// RecvMsg receives into m; the client's end of input is io.EOF itself.
func (x *serverStream) RecvMsg(m any) error {
	if err := x.s.Conn().Receive(m); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return err
	}
	return nil
}

var _ grpc.BidiStreamingServer[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse] = (*serverStream)(nil)

// NewServer returns an http.Server serving svc over HTTP/1.1 and h2c.
func NewServer(svc calculatorv1.CalculatorServiceServer) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: Handler(svc), Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
}

// Client calls a connect CalculatorService over one h2c connection (more
// only if its calls outgrow the server's stream limit).
type Client struct {
	transport *http.Transport
	calculate *connect.Client[calculatorv1.CalculateRequest, calculatorv1.CalculateResponse]
	stream    *connect.Client[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse]
}

// NewClient returns a Client of the server at addr (host:port), whose
// connections wrap passes through (for counting bytes; nil for none).
func NewClient(addr string, wrap func(net.Conn) net.Conn) *Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	var d net.Dialer
	t := &http.Transport{
		Protocols: &p,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, a)
			if err != nil || wrap == nil {
				return nc, err
			}
			return wrap(nc), nil
		},
	}
	hc := &http.Client{Transport: t}
	base := "http://" + addr
	return &Client{
		transport: t,
		calculate: connect.NewClient[calculatorv1.CalculateRequest, calculatorv1.CalculateResponse](hc, base+calculatorv1.CalculatorService_Calculate_FullMethodName),
		stream:    connect.NewClient[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse](hc, base+calculatorv1.CalculatorService_CalculateStream_FullMethodName),
	}
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// Calculate makes a Calculate call. A failure is a gRPC status error.
func (c *Client) Calculate(ctx context.Context, req *calculatorv1.CalculateRequest) (*calculatorv1.CalculateResponse, error) {
	resp, err := c.calculate.CallUnary(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, statusErr(err)
	}
	return resp.Msg, nil
}

// statusErr turns a connect error into a gRPC status error of the same
// code.
func statusErr(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(codes.Code(connect.CodeOf(err)), err.Error())
}

// Stream is a CalculateStream call.
type Stream struct {
	s    *connect.BidiStreamForClient[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse]
	conn connect.StreamingClientConn
}

// CalculateStream opens a CalculateStream call.
func (c *Client) CalculateStream(ctx context.Context) (*Stream, error) {
	s := c.stream.CallBidiStream(ctx)
	if err := s.Send(nil); err != nil { // sends the headers: the call starts
		return nil, statusErr(err)
	}
	conn, err := s.Conn()
	if err != nil {
		return nil, statusErr(err)
	}
	return &Stream{s: s, conn: conn}, nil
}

// Send sends a request.
func (s *Stream) Send(req *calculatorv1.CalculateStreamRequest) error {
	return statusErr(s.s.Send(req))
}

// Recv receives the next response into resp; io.EOF after the server has
// ended the stream.
func (s *Stream) Recv(resp *calculatorv1.CalculateStreamResponse) error {
	err := s.conn.Receive(resp)
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return statusErr(err)
}

// CloseSend tells the server no request follows.
func (s *Stream) CloseSend() error { return statusErr(s.s.CloseRequest()) }
