package arith_test

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"testing"

	"github.com/calcrpc/calc/internal/arith"
)

func TestCalculate(t *testing.T) {
	const minI, maxI = math.MinInt64, math.MaxInt64
	tests := []struct {
		op       arith.Op
		lhs, rhs int64
		want     int64
		err      error
	}{
		{arith.OpAdd, 2, 3, 5, nil},
		{arith.OpAdd, maxI, 0, maxI, nil},
		{arith.OpAdd, maxI, 1, 0, arith.ErrOverflow},
		{arith.OpAdd, minI, -1, 0, arith.ErrOverflow},
		{arith.OpAdd, minI, maxI, -1, nil},
		{arith.OpSubtract, 2, 3, -1, nil},
		{arith.OpSubtract, minI, 1, 0, arith.ErrOverflow},
		{arith.OpSubtract, 0, minI, 0, arith.ErrOverflow},
		{arith.OpSubtract, -1, minI, maxI, nil},
		{arith.OpSubtract, maxI, -1, 0, arith.ErrOverflow},
		{arith.OpMultiply, 6, 7, 42, nil},
		{arith.OpMultiply, -6, 7, -42, nil},
		{arith.OpMultiply, minI, 1, minI, nil},
		{arith.OpMultiply, minI, -1, 0, arith.ErrOverflow},
		{arith.OpMultiply, -1, minI, 0, arith.ErrOverflow},
		{arith.OpMultiply, 1 << 32, 1 << 31, 0, arith.ErrOverflow},
		{arith.OpMultiply, -(1 << 32), 1 << 31, minI, nil},
		{arith.OpMultiply, 1 << 32, 1 << 32, 0, arith.ErrOverflow},
		{arith.OpMultiply, maxI, 0, 0, nil},
		{arith.OpDivide, 7, 2, 3, nil},
		{arith.OpDivide, -7, 2, -3, nil},
		{arith.OpDivide, 7, 0, 0, arith.ErrDivisionByZero},
		{arith.OpDivide, minI, -1, 0, arith.ErrOverflow},
		{arith.OpDivide, minI, 1, minI, nil},
		{arith.OpModulo, 7, 3, 1, nil},
		{arith.OpModulo, -7, 3, -1, nil},
		{arith.OpModulo, 7, -3, 1, nil},
		{arith.OpModulo, 7, 0, 0, arith.ErrDivisionByZero},
		{arith.OpModulo, minI, -1, 0, nil},
		{arith.OpModulo, minI, maxI, -1, nil},
		{arith.OpPower, 2, 10, 1024, nil},
		{arith.OpPower, 2, 62, 1 << 62, nil},
		{arith.OpPower, 2, 63, 0, arith.ErrOverflow},
		{arith.OpPower, -2, 63, minI, nil},
		{arith.OpPower, -2, 64, 0, arith.ErrOverflow},
		{arith.OpPower, 3, 39, 4052555153018976267, nil},
		{arith.OpPower, 3, 40, 0, arith.ErrOverflow},
		{arith.OpPower, 10, maxI, 0, arith.ErrOverflow},
		{arith.OpPower, 0, 0, 1, nil},
		{arith.OpPower, 0, 5, 0, nil},
		{arith.OpPower, 1, maxI, 1, nil},
		{arith.OpPower, -1, maxI, -1, nil},
		{arith.OpPower, 1, -5, 1, nil},
		{arith.OpPower, -1, -5, -1, nil},
		{arith.OpPower, -1, -4, 1, nil},
		{arith.OpPower, 0, -1, 0, arith.ErrDivisionByZero},
		{arith.OpPower, 2, -1, 0, arith.ErrNegativeExponent},
		{arith.OpPower, minI, minI, 0, arith.ErrNegativeExponent},
		{arith.OpUnspecified, 1, 2, 0, arith.ErrUnknownOperator},
		{arith.Op(99), 1, 2, 0, arith.ErrUnknownOperator},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d_%d_%d", tt.op, tt.lhs, tt.rhs), func(t *testing.T) {
			got, err := arith.Calculate(tt.op, tt.lhs, tt.rhs)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("Calculate(%d, %d, %d) = %d, %v; want %d, %v", tt.op, tt.lhs, tt.rhs, got, err, tt.want, tt.err)
			}
		})
	}
}

// FuzzCalculate checks every operation against math/big: the result is exact
// whenever it fits in an int64, and ErrOverflow exactly when it does not.
func FuzzCalculate(f *testing.F) {
	for op := arith.OpAdd; op <= arith.OpPower; op++ {
		f.Add(int32(op), int64(math.MinInt64), int64(-1))
		f.Add(int32(op), int64(3), int64(40))
	}
	f.Fuzz(func(t *testing.T, op int32, lhs, rhs int64) {
		got, err := arith.Calculate(arith.Op(op), lhs, rhs)
		want, wantErr := reference(arith.Op(op), lhs, rhs)
		if !errors.Is(err, wantErr) || (err == nil && got != want) {
			t.Fatalf("Calculate(%d, %d, %d) = %d, %v; math/big says %d, %v", op, lhs, rhs, got, err, want, wantErr)
		}
	})
}

// reference computes lhs op rhs with math/big.
func reference(op arith.Op, lhs, rhs int64) (int64, error) {
	a, b := big.NewInt(lhs), big.NewInt(rhs)
	r := new(big.Int)
	switch op {
	case arith.OpAdd:
		r.Add(a, b)
	case arith.OpSubtract:
		r.Sub(a, b)
	case arith.OpMultiply:
		r.Mul(a, b)
	case arith.OpDivide, arith.OpModulo:
		if rhs == 0 {
			return 0, arith.ErrDivisionByZero
		}
		q, m := new(big.Int).QuoRem(a, b, new(big.Int))
		r = q
		if op == arith.OpModulo {
			r = m
		}
	case arith.OpPower:
		switch {
		case rhs < 0 && lhs == 0:
			return 0, arith.ErrDivisionByZero
		case rhs < 0 && lhs != 1 && lhs != -1:
			return 0, arith.ErrNegativeExponent
		case rhs < 0:
			rhs = -rhs % 2 // 1 and -1 only: the parity decides.
		case lhs > 1 || lhs < -1:
			if rhs > 64 {
				return 0, arith.ErrOverflow
			}
		case rhs > 2:
			rhs = 2 + rhs%2 // 0, 1 and -1: the parity decides.
		}
		r.Exp(a, big.NewInt(rhs), nil)
	default:
		return 0, arith.ErrUnknownOperator
	}
	if !r.IsInt64() {
		return 0, arith.ErrOverflow
	}
	return r.Int64(), nil
}

func ExampleCalculate() {
	fmt.Println(arith.Calculate(arith.OpPower, 2, 10))
	fmt.Println(arith.Calculate(arith.OpDivide, math.MinInt64, -1))
	// Output:
	// 1024 <nil>
	// 0 integer overflow
}
