// Package calltest runs calc's shared conformance cases
// (testdata/conformance/cases.json) against a CalculatorServiceClient, so
// one test body checks every transport: the Go tests run it over raw TCP
// and over gRPC and require identical outcomes.
package calltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
)

// Case is one entry of the case file.
type Case struct {
	Name      string            `json:"name"`
	Kind      string            `json:"kind"`
	RPC       string            `json:"rpc"`
	Request   json.RawMessage   `json:"request"`
	Response  json.RawMessage   `json:"response"`
	Error     *ExpectedError    `json:"error"`
	Requests  []json.RawMessage `json:"requests"`
	Responses []json.RawMessage `json:"responses"`
	Count     int               `json:"count"`
	Operator  string            `json:"operator"`
	RHS       string            `json:"rhs"`
	TimeoutMS int               `json:"timeout_ms"`
}

// ExpectedError is a case's expected failure.
type ExpectedError struct {
	Code    string `json:"code"`
	Reason  string `json:"reason"`
	Field   string `json:"field"`
	Message string `json:"message"`
	Offset  *int   `json:"offset"`
}

// Load reads the case file at path.
func Load(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file struct {
		Cases []Case `json:"cases"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, err
	}
	return file.Cases, nil
}

// Outcome is what a case produced: a comparable summary, so the outcomes of
// two transports can be required equal.
type Outcome struct {
	Response string // protojson of the response(s), if any
	Code     codes.Code
	Message  string
	Details  string // protojson of the status details
}

// Run runs c against client and returns its outcome, or an error saying how
// it differs from the case's expectation.
func Run(ctx context.Context, client calculatorv1.CalculatorServiceClient, c Case) (Outcome, error) {
	switch c.Kind {
	case "unary":
		return runUnary(ctx, client, c)
	case "stream":
		return runStream(ctx, client, c)
	case "stream_generated":
		return runGenerated(ctx, client, c)
	case "stream_deadline":
		ctx, cancel := context.WithTimeout(ctx, time.Duration(c.TimeoutMS)*time.Millisecond)
		defer cancel()
		stream, err := client.CalculateStream(ctx)
		if err == nil {
			_, err = stream.Recv()
		}
		return expectCode(err, codes.DeadlineExceeded)
	case "stream_cancel":
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := client.CalculateStream(ctx)
		if err != nil {
			return Outcome{}, err
		}
		if err := stream.Send(&calculatorv1.CalculateStreamRequest{Id: 1, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}}); err != nil {
			return Outcome{}, err
		}
		resp, err := stream.Recv()
		if err != nil || resp.GetResult() != 2 {
			return Outcome{}, fmt.Errorf("first result %v, %v; want 2", resp, err)
		}
		cancel()
		_, err = stream.Recv()
		return expectCode(err, codes.Canceled)
	case "concurrent":
		return runConcurrent(ctx, client, c)
	}
	return Outcome{}, fmt.Errorf("unknown case kind %q", c.Kind)
}

func expectCode(err error, want codes.Code) (Outcome, error) {
	if got := status.Code(err); got != want {
		return Outcome{}, fmt.Errorf("got %v (%v), want %v", got, err, want)
	}
	return Outcome{Code: want}, nil
}

func runUnary(ctx context.Context, client calculatorv1.CalculatorServiceClient, c Case) (Outcome, error) {
	var resp proto.Message
	var err error
	switch c.RPC {
	case "Calculate":
		req := new(calculatorv1.CalculateRequest)
		if err := protojson.Unmarshal(c.Request, req); err != nil {
			return Outcome{}, err
		}
		resp, err = client.Calculate(ctx, req)
	case "Evaluate":
		req := new(calculatorv1.EvaluateRequest)
		if err := protojson.Unmarshal(c.Request, req); err != nil {
			return Outcome{}, err
		}
		resp, err = client.Evaluate(ctx, req)
	default:
		return Outcome{}, fmt.Errorf("unknown rpc %q", c.RPC)
	}
	out := outcomeOf(resp, err)
	if c.Error == nil {
		if err != nil {
			return out, fmt.Errorf("unexpected error %v", err)
		}
		want := resp.ProtoReflect().New().Interface()
		if err := protojson.Unmarshal(c.Response, want); err != nil {
			return out, err
		}
		if !proto.Equal(resp, want) {
			return out, fmt.Errorf("response %v, want %v", resp, want)
		}
		return out, nil
	}
	return out, checkError(err, c.Error)
}

// checkError compares a call's error with the expectation.
func checkError(err error, want *ExpectedError) error {
	if err == nil {
		return fmt.Errorf("succeeded, want %s", want.Code)
	}
	st := status.Convert(err)
	if wire.CodeName(st.Code()) != want.Code {
		return fmt.Errorf("code %s (%s), want %s", wire.CodeName(st.Code()), st.Message(), want.Code)
	}
	if want.Message != "" && st.Message() != want.Message {
		return fmt.Errorf("message %q, want %q", st.Message(), want.Message)
	}
	var field, reason, offset string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			if len(d.GetFieldViolations()) > 0 {
				field = d.GetFieldViolations()[0].GetField()
			}
		case *errdetails.ErrorInfo:
			reason, offset = d.GetReason(), d.GetMetadata()["offset"]
		}
	}
	if field != want.Field || reason != want.Reason {
		return fmt.Errorf("field %q reason %q, want %q %q", field, reason, want.Field, want.Reason)
	}
	if want.Offset != nil && offset != strconv.Itoa(*want.Offset) {
		return fmt.Errorf("offset %q, want %d", offset, *want.Offset)
	}
	return nil
}

// outcomeOf summarizes a call's result.
func outcomeOf(resp proto.Message, err error) Outcome {
	if err != nil {
		st := status.Convert(err)
		details := ""
		for _, d := range st.Proto().GetDetails() {
			b, _ := protojson.Marshal(d)
			details += string(b) + ";"
		}
		return Outcome{Code: st.Code(), Message: st.Message(), Details: details}
	}
	b, _ := protojson.Marshal(resp)
	return Outcome{Response: string(b)}
}

func runStream(ctx context.Context, client calculatorv1.CalculatorServiceClient, c Case) (Outcome, error) {
	stream, err := client.CalculateStream(ctx)
	if err != nil {
		return Outcome{}, err
	}
	for _, raw := range c.Requests {
		req := new(calculatorv1.CalculateStreamRequest)
		if err := protojson.Unmarshal(raw, req); err != nil {
			return Outcome{}, err
		}
		if err := stream.Send(req); err != nil {
			return Outcome{}, err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return Outcome{}, err
	}
	var out Outcome
	for i, raw := range c.Responses {
		resp, err := stream.Recv()
		if err != nil {
			return out, fmt.Errorf("response %d: %v", i, err)
		}
		want := new(calculatorv1.CalculateStreamResponse)
		if err := protojson.Unmarshal(raw, want); err != nil {
			return out, err
		}
		if !proto.Equal(resp, want) {
			return out, fmt.Errorf("response %d: %v, want %v", i, resp, want)
		}
		b, _ := protojson.Marshal(resp)
		out.Response += string(b) + ";"
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return out, fmt.Errorf("after the last response: %v, want io.EOF", err)
	}
	return out, nil
}

func runGenerated(ctx context.Context, client calculatorv1.CalculatorServiceClient, c Case) (Outcome, error) {
	rhs, err := strconv.ParseInt(c.RHS, 10, 64)
	if err != nil {
		return Outcome{}, err
	}
	op := calculatorv1.Operator(calculatorv1.Operator_value[c.Operator])
	stream, err := client.CalculateStream(ctx)
	if err != nil {
		return Outcome{}, err
	}
	for i := 1; i <= c.Count; i++ {
		err := stream.Send(&calculatorv1.CalculateStreamRequest{Id: uint64(i), Calculation: &calculatorv1.CalculateRequest{Operator: op, Lhs: int64(i), Rhs: rhs}})
		if err != nil {
			return Outcome{}, fmt.Errorf("send %d: %v", i, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return Outcome{}, err
	}
	for i := 1; i <= c.Count; i++ {
		resp, err := stream.Recv()
		if err != nil {
			return Outcome{}, fmt.Errorf("recv %d: %v", i, err)
		}
		if resp.GetId() != uint64(i) || resp.GetResult() != int64(i)*rhs {
			return Outcome{}, fmt.Errorf("response %d: %v", i, resp)
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return Outcome{}, fmt.Errorf("after the last response: %v, want io.EOF", err)
	}
	return Outcome{Response: strconv.Itoa(c.Count)}, nil
}

func runConcurrent(ctx context.Context, client calculatorv1.CalculatorServiceClient, c Case) (Outcome, error) {
	var wg sync.WaitGroup
	errs := make(chan error, c.Count)
	for i := 1; i <= c.Count; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Calculate(ctx, &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: int64(i), Rhs: int64(i)})
			if err != nil || resp.GetResult() != int64(2*i) {
				errs <- fmt.Errorf("call %d: %v, %v", i, resp, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return Outcome{}, err
	}
	return Outcome{Response: strconv.Itoa(c.Count)}, nil
}
