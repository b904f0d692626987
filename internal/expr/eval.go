package expr

import (
	"math"
	"math/big"
)

var (
	bigOne = big.NewInt(1)
	bigTen = big.NewInt(10)

	// limit is 10^MaxDigits, the bound on magnitudes and denominators.
	limit = pow10(MaxDigits)

	// limitLog2 is log2(limit).
	limitLog2 = MaxDigits * math.Log2(10)

	// maxExp bounds the exponents worth computing: for any base other
	// than 0, 1 and -1 in lowest terms, the numerator or the
	// denominator has magnitude at least 2, so raising it to maxExp or
	// more is out of range.
	maxExp = big.NewInt(int64(math.Ceil(limitLog2)))
)

// pow10 returns 10^n.
func pow10(n int) *big.Int {
	return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil)
}

// eval runs the postfix code compiled from s.
func eval(s string, code []instr) (*big.Rat, *Error) {
	var stack []*big.Rat
	for _, in := range code {
		switch in.op {
		case opNum:
			// The lexer admits only digits with at most one '.' and at
			// least one digit, all of which SetString accepts.
			v, _ := new(big.Rat).SetString(s[in.pos:in.end])
			if !inRange(v) {
				return nil, &Error{Kind: KindOutOfRange, Pos: in.pos, Msg: "number out of range"}
			}
			stack = append(stack, v)
		case opNeg:
			top := stack[len(stack)-1]
			top.Neg(top)
		default:
			x, y := stack[len(stack)-2], stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if err := apply(in.op, x, y); err != nil {
				err.Pos = in.pos
				return nil, err
			}
			if !inRange(x) {
				return nil, &Error{Kind: KindOutOfRange, Pos: in.pos, Msg: "result out of range"}
			}
		}
	}
	return stack[0], nil
}

// apply sets x to x op y for a binary operator op. The Pos of the
// returned error is left for the caller to fill in.
func apply(op opcode, x, y *big.Rat) *Error {
	switch op {
	case opAdd:
		x.Add(x, y)
	case opSub:
		x.Sub(x, y)
	case opMul:
		x.Mul(x, y)
	case opDiv:
		if y.Sign() == 0 {
			return &Error{Kind: KindDivisionByZero, Msg: "division by zero"}
		}
		x.Quo(x, y)
	case opRem:
		if !x.IsInt() || !y.IsInt() {
			return &Error{Kind: KindInvalidOperand, Msg: "non-integer operand of '%'"}
		}
		if y.Sign() == 0 {
			return &Error{Kind: KindDivisionByZero, Msg: "division by zero"}
		}
		x.SetInt(new(big.Int).Rem(x.Num(), y.Num()))
	case opPow:
		return power(x, y)
	}
	return nil
}

// power sets x to x^y. It refuses, without computing it, any power
// whose numerator or denominator would clearly be out of range.
func power(x, y *big.Rat) *Error {
	if !y.IsInt() {
		return &Error{Kind: KindInvalidOperand, Msg: "non-integer exponent"}
	}
	n := new(big.Int).Set(y.Num())
	switch {
	case x.Sign() == 0:
		switch n.Sign() {
		case -1:
			return &Error{Kind: KindDivisionByZero, Msg: "division by zero"}
		case 0:
			x.SetInt64(1)
		}
		return nil
	case x.IsInt() && x.Num().CmpAbs(bigOne) == 0:
		if n.Bit(0) == 0 {
			x.SetInt64(1)
		}
		return nil
	}
	if n.Sign() < 0 {
		x.Inv(x)
		n.Neg(n)
	}
	outOfRange := &Error{Kind: KindOutOfRange, Msg: "result out of range"}
	if n.Cmp(maxExp) >= 0 {
		return outOfRange
	}
	// Estimate the logarithms of the result's denominator and
	// magnitude. They are accurate to far better than one unit, so one
	// unit of slack is enough to be sure the result is out of range.
	e := float64(n.Int64())
	num, den := new(big.Int).Abs(x.Num()), x.Denom()
	logNum, logDen := log2(num), log2(den)
	if e*logDen > limitLog2+1 || e*(logNum-logDen) > limitLog2+1 {
		return outOfRange
	}
	neg := x.Sign() < 0 && n.Bit(0) == 1
	num.Exp(num, n, nil)
	if neg {
		num.Neg(num)
	}
	x.SetFrac(num, new(big.Int).Exp(den, n, nil))
	return nil
}

// log2 returns an approximation of log2(x) for x > 0.
func log2(x *big.Int) float64 {
	var mant big.Float
	exp := new(big.Float).SetInt(x).MantExp(&mant)
	m, _ := mant.Float64()
	return float64(exp) + math.Log2(m)
}

// inRange reports whether x is within the MaxDigits magnitude limit.
func inRange(x *big.Rat) bool {
	num, den := x.Num(), x.Denom()
	if den.Cmp(limit) >= 0 {
		return false
	}
	// A numerator with fewer bits than limit is below it, so below
	// limit * den too, and needs no multiplication.
	return num.BitLen() < limit.BitLen() || num.CmpAbs(new(big.Int).Mul(limit, den)) < 0
}
