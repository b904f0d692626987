// Package calculator holds calc's one implementation of
// calculator.v1.CalculatorService. It knows no transport: the gRPC endpoint
// and the raw TCP endpoint register the same *Service, and it reports every
// failure as a gRPC status with machine-readable details.
package calculator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/arith"
	"github.com/calcrpc/calc/internal/expr"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every error detail the
// service attaches.
const ErrorDomain = "calculator.v1"

// CheapMethods are the service's methods whose handlers are pure arithmetic
// bounded to microseconds: a transport may run them without a goroutine of
// their own (tcpserver.Options.InlineMethods). CalculateStream is one: its
// handler does nothing but arithmetic between receiving and sending.
// Evaluate is not: an expression at the limits takes milliseconds.
var CheapMethods = []string{calculatorv1.CalculatorService_Calculate_FullMethodName, calculatorv1.CalculatorService_CalculateStream_FullMethodName}

// Service implements calculatorv1.CalculatorServiceServer. The zero value is
// ready to use and it is safe for concurrent use.
type Service struct {
	calculatorv1.UnimplementedCalculatorServiceServer
}

// New returns a Service.
func New() *Service { return &Service{} }

// Calculate applies the request's operator to its operands.
func (*Service) Calculate(_ context.Context, req *calculatorv1.CalculateRequest) (*calculatorv1.CalculateResponse, error) {
	r, err := arith.Calculate(arith.Op(req.GetOperator()), req.GetLhs(), req.GetRhs())
	if err != nil {
		return nil, calculateStatus(err, req).Err()
	}
	return &calculatorv1.CalculateResponse{Result: r}, nil
}

// Evaluate evaluates the request's expression.
func (*Service) Evaluate(_ context.Context, req *calculatorv1.EvaluateRequest) (*calculatorv1.EvaluateResponse, error) {
	r, err := expr.Evaluate(req.GetExpression())
	if err != nil {
		return nil, evaluateStatus(err).Err()
	}
	return &calculatorv1.EvaluateResponse{Result: r.Text, Exact: r.Exact}, nil
}

// CalculateStream answers each request on the stream in order until the
// client half-closes it. A failed calculation is reported in its response;
// only a transport error ends the stream early.
func (*Service) CalculateStream(stream calculatorv1.CalculatorService_CalculateStreamServer) error {
	req := new(calculatorv1.CalculateStreamRequest)
	resp := new(calculatorv1.CalculateStreamResponse)
	// Send encodes resp before it returns, so one result wrapper serves
	// every answer.
	result := new(calculatorv1.CalculateStreamResponse_Result)
	for {
		if err := stream.RecvMsg(req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		c := req.GetCalculation()
		resp.Reset()
		resp.Id = req.GetId()
		if r, err := arith.Calculate(arith.Op(c.GetOperator()), c.GetLhs(), c.GetRhs()); err != nil {
			st := calculateStatus(err, c)
			resp.Outcome = &calculatorv1.CalculateStreamResponse_Error{Error: &calculatorv1.CalculationError{
				Code:    int32(st.Code()),
				Message: st.Message(),
				Field:   violatedField(st),
			}}
		} else {
			result.Result = r
			resp.Outcome = result
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// calculateStatus maps an arith error for req to its status.
func calculateStatus(err error, req *calculatorv1.CalculateRequest) *status.Status {
	switch {
	case errors.Is(err, arith.ErrDivisionByZero):
		return badRequest(codes.InvalidArgument, "rhs", "DIVISION_BY_ZERO",
			fmt.Sprintf("division by zero: %d %s 0", req.GetLhs(), symbol(req.GetOperator())), nil)
	case errors.Is(err, arith.ErrNegativeExponent):
		return badRequest(codes.InvalidArgument, "rhs", "NEGATIVE_EXPONENT",
			fmt.Sprintf("negative exponent has no integer result: %d ^ %d", req.GetLhs(), req.GetRhs()), nil)
	case errors.Is(err, arith.ErrUnknownOperator):
		return badRequest(codes.InvalidArgument, "operator", "UNKNOWN_OPERATOR",
			fmt.Sprintf("operator must be one of ADD, SUBTRACT, MULTIPLY, DIVIDE, MODULO, POWER; got %s", req.GetOperator()), nil)
	case errors.Is(err, arith.ErrOverflow):
		return withInfo(status.New(codes.OutOfRange,
			fmt.Sprintf("integer overflow: %d %s %d does not fit in int64", req.GetLhs(), symbol(req.GetOperator()), req.GetRhs())),
			"INTEGER_OVERFLOW", nil)
	default:
		return status.New(codes.Internal, err.Error())
	}
}

// evaluateStatus maps an expr error to its status.
func evaluateStatus(err error) *status.Status {
	var e *expr.Error
	if !errors.As(err, &e) {
		return status.New(codes.Internal, err.Error())
	}
	meta := map[string]string{"offset": strconv.Itoa(e.Pos)}
	msg := fmt.Sprintf("%s at offset %d", e.Msg, e.Pos)
	switch e.Kind {
	case expr.KindDivisionByZero:
		return badRequest(codes.InvalidArgument, "expression", "DIVISION_BY_ZERO", msg, meta)
	case expr.KindInvalidOperand:
		return badRequest(codes.InvalidArgument, "expression", "INVALID_OPERAND", msg, meta)
	case expr.KindTooLong:
		return badRequest(codes.ResourceExhausted, "expression", "EXPRESSION_TOO_LONG", msg, meta)
	case expr.KindTooDeep:
		return badRequest(codes.ResourceExhausted, "expression", "EXPRESSION_TOO_DEEP", msg, meta)
	case expr.KindOutOfRange:
		return withInfo(status.New(codes.OutOfRange, msg), "VALUE_OUT_OF_RANGE", meta)
	default:
		return badRequest(codes.InvalidArgument, "expression", "SYNTAX_ERROR", msg, meta)
	}
}

// badRequest returns a status carrying a google.rpc.BadRequest violation of
// field and a google.rpc.ErrorInfo with reason and metadata.
func badRequest(code codes.Code, field, reason, msg string, meta map[string]string) *status.Status {
	st, err := status.New(code, msg).WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg, Reason: reason}},
	})
	if err != nil {
		return status.New(codes.Internal, err.Error())
	}
	return withInfo(st, reason, meta)
}

// withInfo adds a google.rpc.ErrorInfo detail to st.
func withInfo(st *status.Status, reason string, meta map[string]string) *status.Status {
	with, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta})
	if err != nil {
		return status.New(codes.Internal, err.Error())
	}
	return with
}

// violatedField returns the field of st's first BadRequest violation, if any.
func violatedField(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// symbol returns op's arithmetic symbol for error messages.
func symbol(op calculatorv1.Operator) string {
	switch op {
	case calculatorv1.Operator_OPERATOR_ADD:
		return "+"
	case calculatorv1.Operator_OPERATOR_SUBTRACT:
		return "-"
	case calculatorv1.Operator_OPERATOR_MULTIPLY:
		return "*"
	case calculatorv1.Operator_OPERATOR_DIVIDE:
		return "/"
	case calculatorv1.Operator_OPERATOR_MODULO:
		return "%"
	case calculatorv1.Operator_OPERATOR_POWER:
		return "^"
	default:
		return op.String()
	}
}
