package expr

import (
	"math"
	"math/big"
	"strings"
)

var (
	bigFive = big.NewInt(5)

	// minSignificand and maxSignificand bound the integers with
	// exactly Precision digits: [10^(Precision-1), 10^Precision).
	minSignificand = pow10(Precision - 1)
	maxSignificand = pow10(Precision)
)

// format returns the decimal text of v and whether it is exact.
func format(v *big.Rat) (string, bool) {
	neg := v.Sign() < 0
	num := new(big.Int).Abs(v.Num())
	den := v.Denom()
	if k := decimalPlaces(den); k >= 0 {
		// v = num/den = (num * 10^k / den) * 10^-k, exactly.
		num.Mul(num, pow10(k))
		num.Quo(num, den)
		return decimalText(neg, num.String(), k), true
	}
	digits, scale := round(num, den)
	return decimalText(neg, digits, scale), false
}

// decimalPlaces returns the smallest k such that den divides 10^k, or
// -1 if there is none, that is, if den has a prime factor other than
// 2 and 5.
func decimalPlaces(den *big.Int) int {
	twos := int(den.TrailingZeroBits())
	odd := new(big.Int).Rsh(den, uint(twos))
	fives := 0
	q, r := new(big.Int), new(big.Int)
	for odd.Cmp(bigOne) != 0 {
		q.QuoRem(odd, bigFive, r)
		if r.Sign() != 0 {
			return -1
		}
		odd, q = q, odd
		fives++
	}
	return max(twos, fives)
}

// round returns num/den, for positive num and den, rounded to
// Precision significant digits, as digits * 10^-scale.
//
// The rounding is to the nearest. A tie is impossible: it would make
// num/den * 10^scale an odd multiple of 1/2, giving num/den a
// terminating decimal expansion, and format does not call round for
// those. So the result is also the one rounding half to even gives.
func round(num, den *big.Int) (digits string, scale int) {
	// Estimate floor(log10(num/den)) to within a unit or two, then
	// adjust scale until the quotient has exactly Precision digits.
	mag := int(math.Floor(float64(num.BitLen()-den.BitLen()) * math.Log10(2)))
	scale = Precision - 1 - mag
	n, d := new(big.Int), new(big.Int)
	q, r := new(big.Int), new(big.Int)
	for {
		// q, r = num * 10^scale / den, as n / d with integers n and d.
		if scale >= 0 {
			n.Mul(num, pow10(scale))
			d.Set(den)
		} else {
			n.Set(num)
			d.Mul(den, pow10(-scale))
		}
		q.QuoRem(n, d, r)
		switch {
		case q.Cmp(maxSignificand) >= 0:
			scale--
		case q.Cmp(minSignificand) < 0:
			scale++
		default:
			if r.Lsh(r, 1).Cmp(d) > 0 {
				// This may carry q up to 10^Precision, a digit more
				// than usual but still the right value.
				q.Add(q, bigOne)
			}
			return q.String(), scale
		}
	}
}

// decimalText returns the decimal notation of digits * 10^-scale,
// negated if neg, without trailing zeros after the point.
func decimalText(neg bool, digits string, scale int) string {
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	if scale <= 0 {
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", -scale))
		return b.String()
	}
	if len(digits) <= scale {
		digits = strings.Repeat("0", scale-len(digits)+1) + digits
	}
	point := len(digits) - scale
	b.WriteString(digits[:point])
	if frac := strings.TrimRight(digits[point:], "0"); frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}
