// Package arith is calc's checked int64 arithmetic: every operation either
// returns the exact result or an error saying why there is none, and never
// wraps around or panics.
package arith

import (
	"errors"
	"math"
	"math/bits"
)

// Op is an arithmetic operation. Its values match calculator.v1.Operator.
type Op int32

// The operations. OpUnspecified is never valid.
const (
	OpUnspecified Op = iota
	OpAdd
	OpSubtract
	OpMultiply
	OpDivide
	OpModulo
	OpPower
)

// Errors returned by Calculate.
var (
	// ErrDivisionByZero reports a division or modulo by zero, or zero raised
	// to a negative power.
	ErrDivisionByZero = errors.New("division by zero")
	// ErrOverflow reports a result outside the int64 range.
	ErrOverflow = errors.New("integer overflow")
	// ErrNegativeExponent reports a negative exponent whose result is not an
	// integer (any base other than 0, 1 and -1).
	ErrNegativeExponent = errors.New("negative exponent has no integer result")
	// ErrUnknownOperator reports OpUnspecified or a value outside the Op range.
	ErrUnknownOperator = errors.New("unknown operator")
)

// Calculate returns lhs op rhs. Division truncates toward zero and modulo
// takes the sign of lhs, as in Go and C; MinInt64 / -1 overflows while
// MinInt64 % -1 is 0. Power computes 0^0 as 1.
func Calculate(op Op, lhs, rhs int64) (int64, error) {
	switch op {
	case OpAdd:
		s := lhs + rhs
		if (s > lhs) != (rhs > 0) {
			return 0, ErrOverflow
		}
		return s, nil
	case OpSubtract:
		d := lhs - rhs
		if (d < lhs) != (rhs > 0) {
			return 0, ErrOverflow
		}
		return d, nil
	case OpMultiply:
		return multiply(lhs, rhs)
	case OpDivide:
		if rhs == 0 {
			return 0, ErrDivisionByZero
		}
		if lhs == math.MinInt64 && rhs == -1 {
			return 0, ErrOverflow
		}
		return lhs / rhs, nil
	case OpModulo:
		if rhs == 0 {
			return 0, ErrDivisionByZero
		}
		if rhs == -1 {
			return 0, nil // MinInt64 % -1 traps on some CPUs; the answer is 0.
		}
		return lhs % rhs, nil
	case OpPower:
		return power(lhs, rhs)
	default:
		return 0, ErrUnknownOperator
	}
}

// multiply returns a*b or ErrOverflow, using the 128-bit product of the
// magnitudes.
func multiply(a, b int64) (int64, error) {
	neg := (a < 0) != (b < 0)
	hi, lo := bits.Mul64(abs(a), abs(b))
	if hi != 0 {
		return 0, ErrOverflow
	}
	if neg {
		if lo > 1<<63 {
			return 0, ErrOverflow
		}
		return int64(-lo), nil // lo <= 1<<63, so -lo fits.
	}
	if lo > math.MaxInt64 {
		return 0, ErrOverflow
	}
	return int64(lo), nil
}

// power returns base^exp by repeated squaring, failing as soon as a partial
// product overflows.
func power(base, exp int64) (int64, error) {
	if exp < 0 {
		switch base {
		case 0:
			return 0, ErrDivisionByZero
		case 1:
			return 1, nil
		case -1:
			if exp%2 == 0 {
				return 1, nil
			}
			return -1, nil
		default:
			return 0, ErrNegativeExponent
		}
	}
	result := int64(1)
	for {
		if exp&1 == 1 {
			r, err := multiply(result, base)
			if err != nil {
				return 0, err
			}
			result = r
		}
		exp >>= 1
		if exp == 0 {
			return result, nil
		}
		b, err := multiply(base, base)
		if err != nil {
			return 0, err
		}
		base = b
	}
}

// abs returns |x| as a uint64, which holds |MinInt64| too.
func abs(x int64) uint64 {
	if x < 0 {
		return uint64(-x) // -MinInt64 wraps to 1<<63, its magnitude.
	}
	return uint64(x)
}
