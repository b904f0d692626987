package expr_test

import (
	"errors"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/calcrpc/calc/internal/expr"
)

// decimalText matches the form of Result.Text: no exponent, no
// trailing zeros after the point, no "-0".
var decimalText = regexp.MustCompile(`^(0|-?[1-9][0-9]*(\.[0-9]*[1-9])?|-?0\.[0-9]*[1-9])$`)

func FuzzEvaluate(f *testing.F) {
	for _, s := range []string{
		"0.1 + 0.2",
		"2 * (3 + 4) - 10 / 4",
		"1/3",
		"-1/3",
		"1/7*1000000",
		"-2^2",
		"2^-2^2",
		"-7 % 3",
		"0^0",
		"0^-1",
		"2^0.5",
		"7.5 % 2",
		"10^999",
		"10^1000",
		"9^999999999",
		"(1/3)^2095",
		"1 - 10^-40/3",
		"((1)",
		"1.2.3",
		".5 + 5.",
		" \t1\n",
		"--+-1",
		"1 × 2",
		"\xff",
		"",
	} {
		f.Add(s)
	}
	// Long inputs, so that the fuzzer need not spend its time minimizing
	// the first long input it generates.
	f.Add(strings.Repeat("1", expr.MaxLength+1))
	f.Add(strings.Repeat("(", expr.MaxDepth+1))
	f.Add("1" + strings.Repeat("+1", (expr.MaxLength-1)/2))
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(expr.MaxDigits), nil)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := expr.Evaluate(s)
		if err != nil {
			var e *expr.Error
			if !errors.As(err, &e) {
				t.Fatalf("Evaluate(%q) error %v is not an *expr.Error", s, err)
			}
			if e.Pos < 0 || e.Pos > len(s) {
				t.Errorf("Evaluate(%q) error %v: Pos outside [0, %d]", s, err, len(s))
			}
			if strings.HasPrefix(e.Kind.String(), "Kind(") || e.Msg == "" {
				t.Errorf("Evaluate(%q) error %#v: bad Kind or Msg", s, e)
			}
			if (len(s) > expr.MaxLength) != (e.Kind == expr.KindTooLong) {
				t.Errorf("Evaluate(%q) (%d bytes) error %v", s, len(s), err)
			}
			if r != (expr.Result{}) {
				t.Errorf("Evaluate(%q) returned both %+v and %v", s, r, err)
			}
			switch e.Kind {
			case expr.KindDivisionByZero, expr.KindInvalidOperand, expr.KindOutOfRange:
				// Parentheses change where an evaluation error is, not what.
				_, perr := expr.Evaluate("(" + s + ")")
				var pe *expr.Error
				if !errors.As(perr, &pe) || !limited(pe) && (pe.Kind != e.Kind || pe.Pos != e.Pos+1 || pe.Msg != e.Msg) {
					t.Errorf("Evaluate(%q) error %v, but with parentheses %v", s, err, perr)
				}
			}
			return
		}
		// Negating the whole expression negates Value and Text.
		if nr, err := expr.Evaluate("-(" + s + ")"); err != nil {
			var ne *expr.Error
			if !errors.As(err, &ne) || !limited(ne) {
				t.Errorf("Evaluate(%q) = %q, but negated %v", s, r.Text, err)
			}
		} else {
			want := "-" + r.Text
			if r.Text == "0" {
				want = "0"
			} else if r.Text[0] == '-' {
				want = r.Text[1:]
			}
			if nr.Text != want || nr.Exact != r.Exact || nr.Value.Cmp(new(big.Rat).Neg(r.Value)) != 0 {
				t.Errorf("Evaluate(%q) = %q, but negated %q", s, r.Text, nr.Text)
			}
		}
		v := r.Value
		if v == nil {
			t.Fatalf("Evaluate(%q) returned a nil Value", s)
		}
		if !decimalText.MatchString(r.Text) {
			t.Errorf("Evaluate(%q).Text = %q: malformed", s, r.Text)
		}
		if new(big.Int).Abs(v.Num()).Cmp(new(big.Int).Mul(limit, v.Denom())) >= 0 || v.Denom().Cmp(limit) >= 0 {
			t.Errorf("Evaluate(%q).Value = %v: out of range", s, v)
		}
		text, ok := new(big.Rat).SetString(r.Text)
		if !ok {
			t.Fatalf("Evaluate(%q).Text = %q does not parse", s, r.Text)
		}
		if r.Exact != terminates(v.Denom()) {
			t.Errorf("Evaluate(%q) = %v, Exact = %v", s, v, r.Exact)
		}
		if r.Exact {
			if text.Cmp(v) != 0 {
				t.Errorf("Evaluate(%q) = %v, but Text is %q", s, v, r.Text)
			}
			return
		}
		// A rounded Text has at most Precision significant digits and
		// is within half a unit in the last place of Value, so its
		// relative error is at most 10^(1-Precision)/2.
		digits := strings.Trim(strings.NewReplacer("-", "", ".", "").Replace(r.Text), "0")
		if len(digits) > expr.Precision {
			t.Errorf("Evaluate(%q).Text = %q has more than %d significant digits", s, r.Text, expr.Precision)
		}
		diff := new(big.Rat).Sub(text, v)
		diff.Abs(diff)
		diff.Mul(diff, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(expr.Precision-1), nil)))
		diff.Mul(diff, big.NewRat(2, 1))
		if diff.Cmp(new(big.Rat).Abs(v)) > 0 {
			t.Errorf("Evaluate(%q).Text = %q is too far from %v", s, r.Text, v)
		}
	})
}

// limited reports whether e is an error that wrapping an expression in
// parentheses or a sign may cause by itself.
func limited(e *expr.Error) bool {
	return e.Kind == expr.KindTooLong || e.Kind == expr.KindTooDeep
}

// terminates reports whether 1/den has a terminating decimal expansion.
func terminates(den *big.Int) bool {
	d := new(big.Int).Set(den)
	for _, p := range []int64{2, 5} {
		q, r, bp := new(big.Int), new(big.Int), big.NewInt(p)
		for {
			q.QuoRem(d, bp, r)
			if r.Sign() != 0 {
				break
			}
			d.Set(q)
		}
	}
	return d.Cmp(big.NewInt(1)) == 0
}
