package calcdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
)

// HTTPProtocols are the protocols HTTPClient speaks to the HTTP endpoint,
// in a fixed order. Each runs over HTTP/2 with prior knowledge (h2c),
// except "connect-json-http1", which runs over HTTP/1.1 and so can carry
// no bidirectional stream.
var HTTPProtocols = []string{"connect-json", "connect-proto", "grpc-web", "connect-json-http1"}

// HTTPClient returns a client of the HTTP endpoint that calls it with
// connect-go (connect.NewClient over the generated messages) in protocol,
// one of HTTPProtocols. Its errors are gRPC status errors made from the
// Connect errors (code, message, details), so that one test body checks
// every transport; metadata in the context's outgoing gRPC metadata goes
// as request headers. Its connections close when the test ends.
func (s *Servers) HTTPClient(tb testing.TB, protocol string) calculatorv1.CalculatorServiceClient {
	tb.Helper()
	hc := HTTPClientFor(tb, !strings.HasSuffix(protocol, "-http1"), nil)
	var opts []connect.ClientOption
	switch strings.TrimSuffix(protocol, "-http1") {
	case "connect-json":
		opts = append(opts, connect.WithProtoJSON())
	case "connect-proto":
	case "grpc-web":
		opts = append(opts, connect.WithGRPCWeb())
	default:
		tb.Fatalf("unknown HTTP protocol %q", protocol)
	}
	return NewConnectClient(hc, "http://"+s.HTTPAddr, opts...)
}

// HTTPClientFor returns an http.Client for the HTTP endpoint: over HTTP/2
// (with prior knowledge without TLS; with tlsConfig, by ALPN offering h2
// and http/1.1) when h2, over HTTP/1.1 otherwise. Its idle connections close when the test ends.
func HTTPClientFor(tb testing.TB, h2 bool, tlsConfig *tls.Config) *http.Client {
	tb.Helper()
	t := &http.Transport{
		TLSClientConfig: tlsConfig.Clone(), // the Transport adds its ALPN protocols to it
		DialContext:     (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxConnsPerHost: 64, // HTTP/1.1 callers queue rather than open a connection each
	}
	switch {
	case !h2:
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
	case tlsConfig != nil:
		// ALPN offers h2 and http/1.1, and the server picks h2.
		t.ForceAttemptHTTP2 = true
	default:
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	tb.Cleanup(t.CloseIdleConnections)
	return &http.Client{Transport: t}
}

// RESTClient returns a client of the HTTP endpoint's REST mapping, with
// net/http and protojson: Calculate is GET /v1/calculate with the request
// in the query, Evaluate POST /v1/evaluate with the request as JSON, and a
// context deadline travels as X-Server-Timeout. An error answer must be
// the JSON of a google.rpc.Status and is returned as its status error.
// CalculateStream has no REST mapping: it fails with UNIMPLEMENTED without
// calling.
func (s *Servers) RESTClient(tb testing.TB) calculatorv1.CalculatorServiceClient {
	tb.Helper()
	return &restClient{base: "http://" + s.HTTPAddr, hc: HTTPClientFor(tb, false, nil)}
}

// NewConnectClient returns a CalculatorServiceClient that calls the
// service at baseURL with connect-go clients made with opts, its errors
// gRPC status errors as HTTPClient describes.
func NewConnectClient(hc connect.HTTPClient, baseURL string, opts ...connect.ClientOption) calculatorv1.CalculatorServiceClient {
	path := func(method string) string {
		return baseURL + "/" + calculatorv1.CalculatorService_ServiceDesc.ServiceName + "/" + method
	}
	return &connectClient{
		calculate: connect.NewClient[calculatorv1.CalculateRequest, calculatorv1.CalculateResponse](hc, path("Calculate"), opts...),
		evaluate:  connect.NewClient[calculatorv1.EvaluateRequest, calculatorv1.EvaluateResponse](hc, path("Evaluate"), opts...),
		stream:    connect.NewClient[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse](hc, path("CalculateStream"), opts...),
	}
}

type connectClient struct {
	calculate *connect.Client[calculatorv1.CalculateRequest, calculatorv1.CalculateResponse]
	evaluate  *connect.Client[calculatorv1.EvaluateRequest, calculatorv1.EvaluateResponse]
	stream    *connect.Client[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse]
}

func (c *connectClient) Calculate(ctx context.Context, in *calculatorv1.CalculateRequest, _ ...grpc.CallOption) (*calculatorv1.CalculateResponse, error) {
	return callUnary(ctx, c.calculate, in)
}

func (c *connectClient) Evaluate(ctx context.Context, in *calculatorv1.EvaluateRequest, _ ...grpc.CallOption) (*calculatorv1.EvaluateResponse, error) {
	return callUnary(ctx, c.evaluate, in)
}

func callUnary[Req, Res any](ctx context.Context, c *connect.Client[Req, Res], in *Req) (*Res, error) {
	req := connect.NewRequest(in)
	outgoingHeaders(ctx, req.Header())
	resp, err := c.CallUnary(ctx, req)
	if err != nil {
		return nil, StatusError(err)
	}
	return resp.Msg, nil
}

// CalculateStream opens the stream and sends its headers at once, as a
// gRPC client does.
func (c *connectClient) CalculateStream(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse], error) {
	s := c.stream.CallBidiStream(ctx)
	outgoingHeaders(ctx, s.RequestHeader())
	if err := s.Send(nil); err != nil && !errors.Is(err, io.EOF) {
		return nil, StatusError(err)
	}
	return &connectStream{s: s, ctx: ctx}, nil
}

// connectStream is a connect-go bidirectional stream seen as a gRPC one.
type connectStream struct {
	s   *connect.BidiStreamForClient[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse]
	ctx context.Context
}

func (c *connectStream) Send(m *calculatorv1.CalculateStreamRequest) error {
	if err := c.s.Send(m); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF // as gRPC's: the status comes from Recv
		}
		return StatusError(err)
	}
	return nil
}

func (c *connectStream) Recv() (*calculatorv1.CalculateStreamResponse, error) {
	m, err := c.s.Receive()
	if errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, StatusError(err)
	}
	return m, nil
}

func (c *connectStream) CloseSend() error { return c.s.CloseRequest() }

func (c *connectStream) Header() (metadata.MD, error) { return headerMD(c.s.ResponseHeader()), nil }

func (c *connectStream) Trailer() metadata.MD { return headerMD(c.s.ResponseTrailer()) }

func (c *connectStream) Context() context.Context { return c.ctx }

func (c *connectStream) SendMsg(m any) error {
	req, ok := m.(*calculatorv1.CalculateStreamRequest)
	if !ok {
		return status.Errorf(codes.Internal, "SendMsg of a %T", m)
	}
	return c.Send(req)
}

func (c *connectStream) RecvMsg(m any) error {
	resp, err := c.Recv()
	if err != nil {
		return err
	}
	dst, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "RecvMsg into a %T", m)
	}
	proto.Reset(dst)
	proto.Merge(dst, resp)
	return nil
}

// outgoingHeaders copies the context's outgoing gRPC metadata into h.
func outgoingHeaders(ctx context.Context, h http.Header) {
	md, _ := metadata.FromOutgoingContext(ctx)
	for k, vs := range md {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
}

func headerMD(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, vs := range h {
		md.Append(k, vs...)
	}
	return md
}

// StatusError returns the gRPC status error that a connect-go error
// stands for: its code, message and details. Errors that are no
// *connect.Error (the context's) become their status too.
func StatusError(err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return status.FromContextError(err).Err()
	}
	sp := &spb.Status{Code: int32(ce.Code()), Message: ce.Message()}
	for _, d := range ce.Details() {
		sp.Details = append(sp.Details, &anypb.Any{TypeUrl: "type.googleapis.com/" + d.Type(), Value: d.Bytes()})
	}
	return status.ErrorProto(sp)
}

type restClient struct {
	base string
	hc   *http.Client
}

func (c *restClient) Calculate(ctx context.Context, in *calculatorv1.CalculateRequest, _ ...grpc.CallOption) (*calculatorv1.CalculateResponse, error) {
	q := url.Values{
		"operator": {in.GetOperator().String()},
		"lhs":      {strconv.FormatInt(in.GetLhs(), 10)},
		"rhs":      {strconv.FormatInt(in.GetRhs(), 10)},
	}
	out := new(calculatorv1.CalculateResponse)
	return out, c.do(ctx, http.MethodGet, "/v1/calculate?"+q.Encode(), nil, out)
}

func (c *restClient) Evaluate(ctx context.Context, in *calculatorv1.EvaluateRequest, _ ...grpc.CallOption) (*calculatorv1.EvaluateResponse, error) {
	body, err := protojson.Marshal(in)
	if err != nil {
		return nil, err
	}
	out := new(calculatorv1.EvaluateResponse)
	return out, c.do(ctx, http.MethodPost, "/v1/evaluate", body, out)
}

func (c *restClient) CalculateStream(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[calculatorv1.CalculateStreamRequest, calculatorv1.CalculateStreamResponse], error) {
	return nil, status.Error(codes.Unimplemented, "REST has no mapping for CalculateStream")
}

// do calls method path with body and decodes the answer into out, or
// returns the status an error answer holds.
func (c *restClient) do(ctx context.Context, method, path string, body []byte, out proto.Message) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if d, ok := ctx.Deadline(); ok {
		req.Header.Set("X-Server-Timeout", strconv.FormatFloat(time.Until(d).Seconds(), 'f', 3, 64))
	}
	outgoingHeaders(ctx, req.Header)
	resp, err := c.hc.Do(req)
	if err != nil {
		return status.FromContextError(err).Err()
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return status.FromContextError(err).Err()
	}
	if resp.StatusCode == http.StatusOK {
		return protojson.Unmarshal(data, out)
	}
	var sp spb.Status
	if err := protojson.Unmarshal(data, &sp); err != nil {
		return fmt.Errorf("HTTP %s with a body that is no google.rpc.Status (%v): %q", resp.Status, err, data)
	}
	return status.ErrorProto(&sp)
}
