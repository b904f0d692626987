package expr_test

import (
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/calcrpc/calc/internal/expr"
)

// pow returns base^exp as a decimal integer string.
func pow(base, exp int64) string {
	return new(big.Int).Exp(big.NewInt(base), big.NewInt(exp), nil).String()
}

// repeat is strings.Repeat, shortened for table entries.
func repeat(s string, n int) string { return strings.Repeat(s, n) }

func TestEvaluateResults(t *testing.T) {
	tests := []struct {
		name  string // defaults to in
		in    string
		text  string
		exact bool
		value string // the exact value for SetString, when Text is rounded
	}{
		// The examples from the documentation.
		{in: "0.1 + 0.2", text: "0.3", exact: true},
		{in: "2 * (3 + 4) - 10 / 4", text: "11.5", exact: true},
		{in: "7/2", text: "3.5", exact: true},
		{in: "1/3", text: "0.3333333333333333333333333333333333", value: "1/3"},
		{in: "2/3", text: "0.6666666666666666666666666666666667", value: "2/3"},
		{in: "-1/3", text: "-0.3333333333333333333333333333333333", value: "-1/3"},
		{in: "1/7*1000000", text: "142857.1428571428571428571428571429", value: "1000000/7"},
		{in: "-7 % 3", text: "-1", exact: true},
		{in: "2^-1", text: "0.5", exact: true},
		{in: "2^-2", text: "0.25", exact: true},
		{in: "-2^2", text: "-4", exact: true},
		{in: "0^0", text: "1", exact: true},
		{in: "1/3 * 3", text: "1", exact: true},

		// Literals.
		{in: "12", text: "12", exact: true},
		{in: "3.25", text: "3.25", exact: true},
		{in: ".5", text: "0.5", exact: true},
		{in: "5.", text: "5", exact: true},
		{in: "007", text: "7", exact: true},
		{in: "1.500", text: "1.5", exact: true},
		{in: "0.0", text: "0", exact: true},
		{in: "000.000", text: "0", exact: true},

		// Zero is never negative.
		{in: "-0", text: "0", exact: true},
		{in: "-0.0", text: "0", exact: true},
		{in: "0 * -1", text: "0", exact: true},
		{in: "-1 + 1", text: "0", exact: true},
		{in: "-(0)", text: "0", exact: true},

		// Precedence.
		{in: "1 + 2 * 3", text: "7", exact: true},
		{in: "(1 + 2) * 3", text: "9", exact: true},
		{in: "2 * 3 % 4", text: "2", exact: true},
		{in: "2 + 3 % 2", text: "3", exact: true},
		{in: "2 * 3 ^ 2", text: "18", exact: true},
		{in: "2 ^ 2 * 3", text: "12", exact: true},
		{in: "(-2)^2", text: "4", exact: true},
		{in: "-2^-2", text: "-0.25", exact: true},
		{in: "-2^2^3", text: "-256", exact: true},
		{in: "-(2 + 3)", text: "-5", exact: true},
		{in: "2 * -3", text: "-6", exact: true},
		{in: "-3 * -3", text: "9", exact: true},
		{in: "2 ^ (1 + 1)", text: "4", exact: true},

		// Associativity.
		{in: "10 - 4 - 3", text: "3", exact: true},
		{in: "1 - 2 + 3", text: "2", exact: true},
		{in: "100 / 10 / 5", text: "2", exact: true},
		{in: "6 / 2 * 3", text: "9", exact: true},
		{in: "8 % 5 % 2", text: "1", exact: true},
		{in: "2^3^2", text: "512", exact: true},
		{in: "(2^3)^2", text: "64", exact: true},
		{in: "2^-2^2", text: "0.0625", exact: true},
		{in: "2^-(2^2)", text: "0.0625", exact: true},
		{in: "(2^-2)^2", text: "0.0625", exact: true},
		{in: "4^-1^2", text: "0.25", exact: true},

		// Unary operators.
		{in: "--2", text: "2", exact: true},
		{in: "+2", text: "2", exact: true},
		{in: "+-+2", text: "-2", exact: true},
		{in: "1--1", text: "2", exact: true},
		{in: "1 - -1", text: "2", exact: true},
		{in: "1---1", text: "0", exact: true},
		{in: "1 + + 1", text: "2", exact: true},

		// Remainder.
		{in: "7 % 3", text: "1", exact: true},
		{in: "7 % -3", text: "1", exact: true},
		{in: "-7 % -3", text: "-1", exact: true},
		{in: "6 % 3", text: "0", exact: true},
		{in: "-6 % 3", text: "0", exact: true},
		{in: "4 % 2.0", text: "0", exact: true},
		{in: "10^999 % 7", text: "6", exact: true},

		// Powers.
		{in: "2^0", text: "1", exact: true},
		{in: "0^5", text: "0", exact: true},
		{in: "2^1.0", text: "2", exact: true},
		{in: "(-3)^3", text: "-27", exact: true},
		{in: "(-2)^-3", text: "-0.125", exact: true},
		{in: "1.5^2", text: "2.25", exact: true},
		{in: "(2/3)^2", text: "0.4444444444444444444444444444444444", value: "4/9"},
		{in: "1^(10^999)", text: "1", exact: true},
		{in: "0^(10^999)", text: "0", exact: true},
		{in: "(-1)^(10^999)", text: "1", exact: true},
		{in: "(-1)^(10^999+1)", text: "-1", exact: true},
		{in: "(-1)^-(10^999+1)", text: "-1", exact: true},
		{in: "(1/2)^-10", text: "1024", exact: true},

		// Exact decimal expansions.
		{in: "1/8", text: "0.125", exact: true},
		{in: "1/1024", text: "0.0009765625", exact: true},
		{in: "2^-3 * 10", text: "1.25", exact: true},
		{in: "1/625", text: "0.0016", exact: true},
		{in: "3/20", text: "0.15", exact: true},
		{in: "-1/3 * 3 / 64", text: "-0.015625", exact: true},
		{in: "10^40", text: "1" + repeat("0", 40), exact: true},

		// Rounding to Precision significant digits.
		{in: "10^40/3", text: repeat("3", 34) + repeat("0", 6), value: "1" + repeat("0", 40) + "/3"},
		{in: "10^34/3", text: repeat("3", 34), value: "1" + repeat("0", 34) + "/3"},
		{in: "2/3*10^33", text: repeat("6", 33) + ".7", value: "2" + repeat("0", 33) + "/3"},
		{in: "2/3*10^-40", text: "0." + repeat("0", 40) + repeat("6", 33) + "7", value: "2/3" + repeat("0", 40)},
		{in: "1 - 10^-40/3", text: "1", value: "2" + repeat("9", 40) + "/3" + repeat("0", 40)},
		{in: "-(1 - 10^-40/3)", text: "-1", value: "-2" + repeat("9", 40) + "/3" + repeat("0", 40)},
		{in: "1/7", text: "0.1428571428571428571428571428571429", value: "1/7"},
		{in: "100/7", text: "14.28571428571428571428571428571429", value: "100/7"},
		{in: "1/6", text: "0.1666666666666666666666666666666667", value: "1/6"},
		{in: "31/3", text: "10." + repeat("3", 32), value: "31/3"},
		{in: "-31/3", text: "-10." + repeat("3", 32), value: "-31/3"},

		// Whitespace.
		{in: " \t1\n+\r2\v*\f3 ", text: "7", exact: true},
		{in: "( 1 + 2 ) * 3", text: "9", exact: true},
		{in: "\n\n42\n\n", text: "42", exact: true},

		// Values near the limits.
		{name: "10^999", in: "10^999", text: "1" + repeat("0", 999), exact: true},
		{name: "-10^999", in: "-10^999", text: "-1" + repeat("0", 999), exact: true},
		{name: "9*10^999", in: "9*10^999", text: "9" + repeat("0", 999), exact: true},
		{name: "10^-999", in: "10^-999", text: "0." + repeat("0", 998) + "1", exact: true},
		{name: "1000 nines", in: repeat("9", 1000), text: repeat("9", 1000), exact: true},
		{name: "999 decimals", in: "0." + repeat("0", 998) + "1", text: "0." + repeat("0", 998) + "1", exact: true},
		{name: "999 decimals negated", in: "-0." + repeat("9", 999), text: "-0." + repeat("9", 999), exact: true},
		{name: "1000 decimals, 1000-digit denominator", in: "0." + repeat("0", 999) + "5", text: "0." + repeat("0", 999) + "5", exact: true},
		{name: "leading zeros", in: repeat("0", 3000) + "1", text: "1", exact: true},
		{name: "trailing zeros", in: "1." + repeat("0", 3000), text: "1", exact: true},
		{name: "2^3321", in: "2^3321", text: pow(2, 3321), exact: true},
		{name: "0.5^3321", in: "0.5^3321", text: "0." + repeat("0", 3321-len(pow(5, 3321))) + pow(5, 3321), exact: true},
		{name: "1 - 10^-999", in: "1 - 10^-999", text: "0." + repeat("9", 999), exact: true},
		{name: "10^999 - 10^-999", in: "10^999 - 10^-999", text: repeat("9", 999) + "." + repeat("9", 999), exact: true},
		{name: "(1/3)^2095", in: "(1/3)^2095", text: "0." + repeat("0", 999) + "2697561547417087530632002709769624", value: "1/" + pow(3, 2095)},
		{name: "1/3^2095", in: "1/3^2095", text: "0." + repeat("0", 999) + "2697561547417087530632002709769624", value: "1/" + pow(3, 2095)},
	}
	for _, tt := range tests {
		name := tt.name
		if name == "" {
			name = tt.in
		}
		t.Run(name, func(t *testing.T) {
			r, err := expr.Evaluate(tt.in)
			if err != nil {
				t.Fatalf("Evaluate(%q) error: %v", tt.in, err)
			}
			if r.Text != tt.text {
				t.Errorf("Text = %q, want %q", r.Text, tt.text)
			}
			if r.Exact != tt.exact {
				t.Errorf("Exact = %v, want %v", r.Exact, tt.exact)
			}
			value := tt.value
			if value == "" {
				value = tt.text
			}
			want, ok := new(big.Rat).SetString(value)
			if !ok {
				t.Fatalf("bad test value %q", value)
			}
			if r.Value == nil || r.Value.Cmp(want) != 0 {
				t.Errorf("Value = %v, want %v", r.Value, want)
			}
		})
	}
}

func TestEvaluateErrors(t *testing.T) {
	tests := []struct {
		name string // defaults to in
		in   string
		kind expr.Kind
		pos  int
		msg  string
	}{
		// Syntax.
		{in: "", kind: expr.KindSyntax, pos: 0, msg: "empty expression"},
		{in: "   ", kind: expr.KindSyntax, pos: 3, msg: "empty expression"},
		{in: "1 +", kind: expr.KindSyntax, pos: 3, msg: "expected a number"},
		{in: "--", kind: expr.KindSyntax, pos: 2, msg: "expected a number"},
		{in: "2^", kind: expr.KindSyntax, pos: 2, msg: "expected a number"},
		{in: "(", kind: expr.KindSyntax, pos: 1, msg: "expected a number"},
		{in: "(1", kind: expr.KindSyntax, pos: 0, msg: "unbalanced '('"},
		{in: "((1)", kind: expr.KindSyntax, pos: 0, msg: "unbalanced '('"},
		{in: "1 + (2 * (3)", kind: expr.KindSyntax, pos: 4, msg: "unbalanced '('"},
		{in: "(1))", kind: expr.KindSyntax, pos: 3, msg: "unbalanced ')'"},
		{in: "1 + 2)", kind: expr.KindSyntax, pos: 5, msg: "unbalanced ')'"},
		{in: ")", kind: expr.KindSyntax, pos: 0, msg: "unexpected ')'"},
		{in: "()", kind: expr.KindSyntax, pos: 1, msg: "unexpected ')'"},
		{in: "(1 +)", kind: expr.KindSyntax, pos: 4, msg: "unexpected ')'"},
		{in: "1 2", kind: expr.KindSyntax, pos: 2, msg: "unexpected number"},
		{in: "(1 2)", kind: expr.KindSyntax, pos: 3, msg: "unexpected number"},
		{in: "1.2.3", kind: expr.KindSyntax, pos: 3, msg: "unexpected number"},
		{in: "2(3)", kind: expr.KindSyntax, pos: 1, msg: "unexpected '('"},
		{in: "(1)(2)", kind: expr.KindSyntax, pos: 3, msg: "unexpected '('"},
		{in: "1 + * 2", kind: expr.KindSyntax, pos: 4, msg: "unexpected '*'"},
		{in: "*1", kind: expr.KindSyntax, pos: 0, msg: "unexpected '*'"},
		{in: "2 ** 3", kind: expr.KindSyntax, pos: 3, msg: "unexpected '*'"},
		{in: "1 ^ ^ 2", kind: expr.KindSyntax, pos: 4, msg: "unexpected '^'"},
		{in: "1 / % 2", kind: expr.KindSyntax, pos: 4, msg: "unexpected '%'"},
		{in: ".", kind: expr.KindSyntax, pos: 0, msg: "unexpected character '.'"},
		{in: "1 + .", kind: expr.KindSyntax, pos: 4, msg: "unexpected character '.'"},
		{in: "1..2", kind: expr.KindSyntax, pos: 2, msg: "unexpected number"},
		{in: "1..", kind: expr.KindSyntax, pos: 2, msg: "unexpected character '.'"},
		{in: "1e5", kind: expr.KindSyntax, pos: 1, msg: "unexpected character 'e'"},
		{in: "0x10", kind: expr.KindSyntax, pos: 1, msg: "unexpected character 'x'"},
		{in: "1,000", kind: expr.KindSyntax, pos: 1, msg: "unexpected character ','"},
		{in: "1 = 1", kind: expr.KindSyntax, pos: 2, msg: "unexpected character '='"},
		{in: "pi", kind: expr.KindSyntax, pos: 0, msg: "unexpected character 'p'"},
		{in: "1+@", kind: expr.KindSyntax, pos: 2, msg: "unexpected character '@'"},
		{in: "-@", kind: expr.KindSyntax, pos: 1, msg: "unexpected character '@'"},
		{in: "2^@", kind: expr.KindSyntax, pos: 2, msg: "unexpected character '@'"},
		{in: "(@", kind: expr.KindSyntax, pos: 1, msg: "unexpected character '@'"},
		{in: "(1)@", kind: expr.KindSyntax, pos: 3, msg: "unexpected character '@'"},
		{in: "1 × 2", kind: expr.KindSyntax, pos: 2, msg: "unexpected character '×'"},
		{in: "1\u00a0+ 2", kind: expr.KindSyntax, pos: 1, msg: `unexpected character '\u00a0'`},
		{in: "1 + \xff", kind: expr.KindSyntax, pos: 4, msg: "unexpected byte 0xff"},
		{in: "1\x00", kind: expr.KindSyntax, pos: 1, msg: `unexpected character '\x00'`},
		// Syntax errors win over evaluation errors earlier in the text.
		{in: "1/0 + )", kind: expr.KindSyntax, pos: 6, msg: "unexpected ')'"},
		{in: "10^1000 2", kind: expr.KindSyntax, pos: 8, msg: "unexpected number"},

		// Division by zero.
		{in: "1 / 0", kind: expr.KindDivisionByZero, pos: 2, msg: "division by zero"},
		{in: "1 + 2 / 0", kind: expr.KindDivisionByZero, pos: 6, msg: "division by zero"},
		{in: "1 / 0.000", kind: expr.KindDivisionByZero, pos: 2, msg: "division by zero"},
		{in: "1 / (2 - 2)", kind: expr.KindDivisionByZero, pos: 2, msg: "division by zero"},
		{in: "1 % 0", kind: expr.KindDivisionByZero, pos: 2, msg: "division by zero"},
		{in: "0 % 0", kind: expr.KindDivisionByZero, pos: 2, msg: "division by zero"},
		{in: "0 ^ -1", kind: expr.KindDivisionByZero, pos: 2, msg: "division by zero"},
		{in: "0 ^ -2 ^ 2", kind: expr.KindDivisionByZero, pos: 2, msg: "division by zero"},
		{in: "(1 - 1) ^ -(10^999)", kind: expr.KindDivisionByZero, pos: 8, msg: "division by zero"},
		// The first failing operation in evaluation order is reported.
		{in: "1/0 + 2^0.5", kind: expr.KindDivisionByZero, pos: 1, msg: "division by zero"},

		// Invalid operands.
		{in: "2 ^ 0.5", kind: expr.KindInvalidOperand, pos: 2, msg: "non-integer exponent"},
		{in: "4 ^ (1/2)", kind: expr.KindInvalidOperand, pos: 2, msg: "non-integer exponent"},
		{in: "0 ^ 0.5", kind: expr.KindInvalidOperand, pos: 2, msg: "non-integer exponent"},
		{in: "0 ^ -0.5", kind: expr.KindInvalidOperand, pos: 2, msg: "non-integer exponent"},
		{in: "2 ^ 0.5 ^ 2", kind: expr.KindInvalidOperand, pos: 2, msg: "non-integer exponent"},
		{in: "7.5 % 2", kind: expr.KindInvalidOperand, pos: 4, msg: "non-integer operand of '%'"},
		{in: "7 % 2.5", kind: expr.KindInvalidOperand, pos: 2, msg: "non-integer operand of '%'"},
		{in: "0.5 % 0", kind: expr.KindInvalidOperand, pos: 4, msg: "non-integer operand of '%'"},
		{in: "1 % (1/3)", kind: expr.KindInvalidOperand, pos: 2, msg: "non-integer operand of '%'"},
		{in: "2^0.5 + 1/0", kind: expr.KindInvalidOperand, pos: 1, msg: "non-integer exponent"},

		// Too long: checked before anything else.
		{name: "MaxLength+1 spaces", in: repeat(" ", expr.MaxLength) + "1", kind: expr.KindTooLong, pos: expr.MaxLength, msg: "expression longer than 4096 bytes"},
		{name: "MaxLength+1 garbage", in: repeat("@", expr.MaxLength+1), kind: expr.KindTooLong, pos: expr.MaxLength, msg: "expression longer than 4096 bytes"},

		// Too deep.
		{name: "65 parentheses", in: repeat("(", 65) + "1" + repeat(")", 65), kind: expr.KindTooDeep, pos: 64, msg: "nesting deeper than 64 levels"},
		{name: "65 minus signs", in: repeat("-", 65) + "1", kind: expr.KindTooDeep, pos: 64, msg: "nesting deeper than 64 levels"},
		{name: "65 plus signs", in: repeat("+", 65) + "1", kind: expr.KindTooDeep, pos: 64, msg: "nesting deeper than 64 levels"},
		{name: "65 mixed", in: repeat("-(", 32) + "-1" + repeat(")", 32), kind: expr.KindTooDeep, pos: 64, msg: "nesting deeper than 64 levels"},
		{name: "65 exponent signs", in: repeat("1^-", 65) + "1", kind: expr.KindTooDeep, pos: 64*3 + 2, msg: "nesting deeper than 64 levels"},
		{name: "MaxLength parentheses", in: repeat("(", expr.MaxLength), kind: expr.KindTooDeep, pos: 64, msg: "nesting deeper than 64 levels"},
		{name: "MaxLength minus signs", in: repeat("-", expr.MaxLength), kind: expr.KindTooDeep, pos: 64, msg: "nesting deeper than 64 levels"},
		{name: "too deep before a syntax error", in: repeat("(", 65) + ")", kind: expr.KindTooDeep, pos: 64, msg: "nesting deeper than 64 levels"},

		// Out of range.
		{in: "10^1000", kind: expr.KindOutOfRange, pos: 2, msg: "result out of range"},
		{in: "-10^1000", kind: expr.KindOutOfRange, pos: 3, msg: "result out of range"},
		{in: "10^-1000", kind: expr.KindOutOfRange, pos: 2, msg: "result out of range"},
		{in: "0.1^1000", kind: expr.KindOutOfRange, pos: 3, msg: "result out of range"},
		{in: "10^999 * 10", kind: expr.KindOutOfRange, pos: 7, msg: "result out of range"},
		{in: "10^999 / 0.1", kind: expr.KindOutOfRange, pos: 7, msg: "result out of range"},
		{in: "10^-999 / 10", kind: expr.KindOutOfRange, pos: 8, msg: "result out of range"},
		{in: "9 * 10^999 + 10^999", kind: expr.KindOutOfRange, pos: 11, msg: "result out of range"},
		{in: "-9 * 10^999 - 10^999", kind: expr.KindOutOfRange, pos: 12, msg: "result out of range"},
		{in: "1/3^2096", kind: expr.KindOutOfRange, pos: 3, msg: "result out of range"},
		{in: "(1/3)^2096", kind: expr.KindOutOfRange, pos: 5, msg: "result out of range"},
		{in: "1/3^1000 / 3^1100", kind: expr.KindOutOfRange, pos: 9, msg: "result out of range"},
		{in: "9^999999999", kind: expr.KindOutOfRange, pos: 1, msg: "result out of range"},
		{in: "2^(10^999)", kind: expr.KindOutOfRange, pos: 1, msg: "result out of range"},
		{in: "2^2^2^2^2", kind: expr.KindOutOfRange, pos: 1, msg: "result out of range"},
		{name: "literal 10^1000", in: "1" + repeat("0", 1000), kind: expr.KindOutOfRange, pos: 0, msg: "number out of range"},
		{name: "literal 10^1000 operand", in: "1 + 1" + repeat("0", 1000), kind: expr.KindOutOfRange, pos: 4, msg: "number out of range"},
		{name: "literal 10^-1000", in: "0." + repeat("0", 999) + "1", kind: expr.KindOutOfRange, pos: 0, msg: "number out of range"},
		{name: "literal 1000 decimals", in: "-0." + repeat("9", 1000), kind: expr.KindOutOfRange, pos: 1, msg: "number out of range"},
	}
	for _, tt := range tests {
		name := tt.name
		if name == "" {
			name = tt.in
		}
		t.Run(name, func(t *testing.T) {
			r, err := expr.Evaluate(tt.in)
			var e *expr.Error
			if !errors.As(err, &e) {
				t.Fatalf("Evaluate(%q) = %+v, %v; want an *expr.Error", tt.in, r, err)
			}
			if e.Kind != tt.kind || e.Pos != tt.pos || e.Msg != tt.msg {
				t.Errorf("error = {%v, %d, %q}, want {%v, %d, %q}", e.Kind, e.Pos, e.Msg, tt.kind, tt.pos, tt.msg)
			}
			if r != (expr.Result{}) {
				t.Errorf("Result = %+v, want the zero Result", r)
			}
		})
	}
}

func TestLimitBoundaries(t *testing.T) {
	tests := []struct {
		name string
		in   string
		text string
	}{
		{"MaxLength spaces", repeat(" ", expr.MaxLength-1) + "1", "1"},
		{"MaxLength sum", "1" + repeat("+1", (expr.MaxLength-2)/2) + " ", "2048"},
		{"MaxLength literal", "0." + repeat("0", expr.MaxLength-3) + "0", "0"},
		{"MaxDepth parentheses", repeat("(", 64) + "1" + repeat(")", 64), "1"},
		{"MaxDepth minus signs", repeat("-", 64) + "1", "1"},
		{"MaxDepth plus signs", repeat("+", 64) + "1", "1"},
		{"MaxDepth mixed", repeat("-(", 32) + "1" + repeat(")", 32), "1"},
		{"MaxDepth exponent signs", repeat("1^-", 64) + "1", "1"},
		{"MaxDepth sequential", repeat(repeat("(", 64)+"1"+repeat(")", 64)+"+", 10) + "1", "11"},
		{"long power chain", repeat("1^", 2000) + "1", "1"},
		{"long sign-separated sum", repeat("-1+", 1000) + "1", "-999"},
		{"10^(MaxDigits-1)", "10^999", "1" + repeat("0", 999)},
		{"largest integer literal", repeat("9", expr.MaxDigits), repeat("9", expr.MaxDigits)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.in) > expr.MaxLength {
				t.Fatalf("test input is %d bytes long", len(tt.in))
			}
			r, err := expr.Evaluate(tt.in)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if r.Text != tt.text {
				t.Errorf("Text = %q, want %q", r.Text, tt.text)
			}
		})
	}
	if n := len("1" + repeat("+1", (expr.MaxLength-2)/2) + " "); n != expr.MaxLength {
		t.Errorf("MaxLength sum input is %d bytes", n)
	}
}

func TestLargestDenominator(t *testing.T) {
	// The largest denominator allowed is 10^1000 - 1.
	nines := repeat("9", expr.MaxDigits)
	r, err := expr.Evaluate("1/" + nines)
	if err != nil {
		t.Fatal(err)
	}
	if r.Exact || r.Value.Denom().String() != nines {
		t.Errorf("1/%s... = %+v", nines[:5], r)
	}
	// 1/(10^1000 - 1) = 10^-1000 + 10^-2000 + ..., which rounds to 10^-1000.
	want := "0." + repeat("0", 999) + "1"
	if r.Text != want {
		t.Errorf("Text = %q, want %q", r.Text, want)
	}
	_, err = expr.Evaluate("1/" + nines + "/10")
	var e *expr.Error
	if !errors.As(err, &e) || e.Kind != expr.KindOutOfRange || e.Pos != 1002 {
		t.Errorf("1/99...9/10 error = %v, want out of range at 1002", err)
	}
}

func TestHugePowersAreQuick(t *testing.T) {
	for _, in := range []string{
		"9^999999999",
		"(1/9)^999999999",
		"9^-999999999",
		"1.5^999999999",
		"(-2)^-999999999",
		"1.0001^999999",
		"(10^999)^2",
		"(10^999)^(10^999)",
		"(10^-999)^-(10^999)",
		"(1 + 10^-999)^(10^999)",
		"(2/3)^3321",
	} {
		t.Run(in, func(t *testing.T) {
			start := time.Now()
			_, err := expr.Evaluate(in)
			elapsed := time.Since(start)
			var e *expr.Error
			if !errors.As(err, &e) || e.Kind != expr.KindOutOfRange {
				t.Errorf("error = %v, want out of range", err)
			}
			if elapsed > time.Second {
				t.Errorf("took %v", elapsed)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		kind expr.Kind
		want string
	}{
		{expr.KindSyntax, "syntax error"},
		{expr.KindDivisionByZero, "division by zero"},
		{expr.KindInvalidOperand, "invalid operand"},
		{expr.KindTooLong, "too long"},
		{expr.KindTooDeep, "too deep"},
		{expr.KindOutOfRange, "out of range"},
		{0, "Kind(0)"},
		{7, "Kind(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.kind.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q, want %q", int(tt.kind), got, tt.want)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	_, err := expr.Evaluate("1 + 2 / 0")
	if got, want := err.Error(), "expr: division by zero at offset 6"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e := &expr.Error{Kind: expr.KindSyntax, Pos: 3, Msg: "unexpected ')'"}
	if got, want := e.Error(), "expr: unexpected ')' at offset 3"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestValueIsOwnedByCaller(t *testing.T) {
	r1, err := expr.Evaluate("1/3")
	if err != nil {
		t.Fatal(err)
	}
	r1.Value.SetInt64(5)
	r2, err := expr.Evaluate("1/3")
	if err != nil {
		t.Fatal(err)
	}
	if r2.Value.String() != "1/3" {
		t.Errorf("second Evaluate(\"1/3\").Value = %v", r2.Value)
	}
}

func TestConcurrentUse(t *testing.T) {
	done := make(chan string)
	for range 8 {
		go func() {
			r, err := expr.Evaluate("2/3 + 10^-50")
			if err != nil {
				done <- err.Error()
				return
			}
			done <- r.Text
		}()
	}
	for range 8 {
		if got := <-done; got != "0.6666666666666666666666666666666667" {
			t.Errorf("got %q", got)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	benchmarks := []struct {
		name string
		in   string
	}{
		{"small", "2 * (3 + 4) - 10 / 4"},
		{"decimal", "0.1 + 0.2 * 3.25 - .5"},
		{"repeating", "1/7 * 1000000"},
		{"power", "2^-2^2 + (-3)^3"},
		{"big power", "7^1183"},
		{"long sum", "1" + repeat("+1", (expr.MaxLength-1)/2)},
		{"deep", repeat("(", expr.MaxDepth) + "1" + repeat(")", expr.MaxDepth)},
		{"huge power", "9^999999999"},
		{"syntax error", "1 + (2 * 3"},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = expr.Evaluate(bm.in)
			}
		})
	}
}
