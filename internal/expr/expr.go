package expr

import (
	"fmt"
	"math/big"
)

// Limits on the input and on the values computed from it.
const (
	// MaxLength is the maximum length of an expression, in bytes.
	MaxLength = 4096

	// MaxDepth is the maximum nesting depth. Every '(' and every unary
	// operator opens one level, which lasts until the end of its
	// operand; the depth of an expression is the largest number of
	// levels open at once. So "((1))" and "--1" have depth 2, "-(-1)"
	// has depth 3, "-1 + -1" has depth 1 and "2^-2^-2" has depth 2.
	// Binary operators, including chains of '^', do not count.
	MaxDepth = 64

	// MaxDigits is the magnitude limit. A value (a literal, an
	// intermediate result or the final result) is out of range when its
	// absolute value is at least 10^MaxDigits, or when its denominator
	// in lowest terms has more than MaxDigits decimal digits, that is,
	// is at least 10^MaxDigits.
	MaxDigits = 1000

	// Precision is the number of significant digits in the text of a
	// result that has no terminating decimal expansion.
	Precision = 34
)

// Result is the value of an expression.
type Result struct {
	// Value is the exact rational value, in lowest terms. The caller
	// owns it.
	Value *big.Rat

	// Text is Value in decimal notation: exact when Exact is true,
	// otherwise rounded to Precision significant digits. It never uses
	// exponent notation, has no trailing zeros after the decimal point
	// and no point at all for integers, carries a "-" sign only when
	// negative, and is "0" for zero.
	Text string

	// Exact reports whether Text equals Value exactly, which is the
	// case when the denominator of Value has no prime factors other
	// than 2 and 5.
	Exact bool
}

// Evaluate parses and evaluates the arithmetic expression s.
//
// Every error it returns is an *Error. An expression longer than
// MaxLength is rejected before anything else; otherwise the whole
// expression is parsed before evaluation starts, so a syntax or depth
// error is reported in preference to any evaluation error, and the
// leftmost syntax or depth error wins. Evaluation errors are reported
// for the first operation, in evaluation order, that fails.
func Evaluate(s string) (Result, error) {
	if len(s) > MaxLength {
		return Result{}, &Error{
			Kind: KindTooLong,
			Pos:  MaxLength,
			Msg:  fmt.Sprintf("expression longer than %d bytes", MaxLength),
		}
	}
	code, err := parse(s)
	if err != nil {
		return Result{}, err
	}
	v, err := eval(s, code)
	if err != nil {
		return Result{}, err
	}
	text, exact := format(v)
	return Result{Value: v, Text: text, Exact: exact}, nil
}

// Kind classifies an Error.
type Kind int

// The kinds of Error.
const (
	// KindSyntax is a malformed expression: an unexpected character or
	// token, a missing operand, an unbalanced parenthesis or an empty
	// expression.
	KindSyntax Kind = iota + 1

	// KindDivisionByZero is x / 0, x % 0, or 0 raised to a negative
	// power.
	KindDivisionByZero

	// KindInvalidOperand is an operand outside an operator's domain: a
	// non-integer exponent or a non-integer operand of '%'.
	KindInvalidOperand

	// KindTooLong is an expression longer than MaxLength bytes.
	KindTooLong

	// KindTooDeep is an expression nested deeper than MaxDepth.
	KindTooDeep

	// KindOutOfRange is a literal or a computed value beyond the
	// MaxDigits magnitude limit.
	KindOutOfRange
)

// String returns a short lower-case description of k.
func (k Kind) String() string {
	switch k {
	case KindSyntax:
		return "syntax error"
	case KindDivisionByZero:
		return "division by zero"
	case KindInvalidOperand:
		return "invalid operand"
	case KindTooLong:
		return "too long"
	case KindTooDeep:
		return "too deep"
	case KindOutOfRange:
		return "out of range"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is an error found while parsing or evaluating an expression.
type Error struct {
	// Kind classifies the error.
	Kind Kind

	// Pos is the 0-based byte offset in the input where the problem
	// is: the offending character or token, the opening parenthesis of
	// an unbalanced pair, len(s) for an unexpected end of input,
	// MaxLength for an expression that is too long, the literal for a
	// literal out of range, and the binary operator for an operation
	// that fails.
	Pos int

	// Msg is a lower-case description of the problem, such as
	// "division by zero" or "unexpected ')'".
	Msg string
}

// Error returns the message and position as
// "expr: <Msg> at offset <Pos>".
func (e *Error) Error() string {
	return fmt.Sprintf("expr: %s at offset %d", e.Msg, e.Pos)
}
