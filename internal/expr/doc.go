// Package expr evaluates arithmetic expressions exactly, with results in
// decimal notation.
//
// # Evaluating
//
// Evaluate takes the text of an expression and returns its value:
//
//	r, err := expr.Evaluate("2 * (3 + 4) - 10 / 4")
//	// r.Text == "11.5", r.Exact == true, r.Value is the big.Rat 23/2
//
// On failure the error is an *Error, which says what went wrong (its
// Kind), where (a byte offset, Pos) and a message (Msg):
//
//	_, err := expr.Evaluate("1 + 2 / 0")
//	// err.Error() == "expr: division by zero at offset 6"
//
// # Grammar
//
// An expression is made of numbers, the binary operators + - * / % ^,
// unary minus and plus, and parentheses. ASCII spaces, tabs, newlines,
// carriage returns, vertical tabs and form feeds may appear between any
// two tokens, and at either end.
//
// A number is a decimal literal: digits with at most one decimal point
// and at least one digit, as in 12, 3.25, .5 or 5. — there is no
// exponent notation, hex or digit grouping, and no implicit
// multiplication, so 2(3) is an error.
//
// The operators bind as follows, tightest first:
//
//	^          power, right-associative: 2^3^2 is 2^(3^2) = 512
//	- +        unary minus and plus
//	* / %      multiplication, division and remainder, left-associative
//	+ -        addition and subtraction, left-associative
//
// As in mathematics and Python, a unary minus on the left of ^ applies to
// the whole power, so -2^2 is -(2^2) = -4, while the exponent itself may
// start with a sign: 2^-1 is 0.5 and 2^-2^2 is 2^-(2^2) = 0.0625. Write
// (-2)^2 for the square of -2.
//
// # Semantics
//
// All arithmetic is exact: values are rational numbers (math/big.Rat), so
// 0.1 + 0.2 is exactly 0.3 and 1/3 * 3 is exactly 1.
//
//   - x / y is exact division; 7/2 is 3.5. Dividing by zero is an error
//     of kind KindDivisionByZero.
//   - x % y is the remainder of truncated division, whose sign is that of
//     the dividend, as in Go and C: 7 % 3 is 1, -7 % 3 is -1 and
//     7 % -3 is 1. Both operands must be integers (KindInvalidOperand
//     otherwise, checked before the divisor is tested for zero), and
//     x % 0 is KindDivisionByZero.
//   - x ^ y needs an integer exponent (KindInvalidOperand otherwise). A
//     negative exponent gives a reciprocal, 2^-2 is 0.25; 0^0 is 1; and
//     0 raised to a negative power is KindDivisionByZero.
//
// Operands are evaluated left to right. The whole expression is parsed
// before any of it is evaluated, so a syntax error is reported even if
// evaluation would have failed earlier in the text.
//
// # Results
//
// A Result holds the exact Value and its decimal Text. When the
// denominator of Value in lowest terms has no prime factors other than 2
// and 5, the value has a terminating decimal expansion, Text is exact and
// Exact is true:
//
//	1/8         0.125
//	2^-3 * 10   1.25
//	10^40       10000000000000000000000000000000000000000
//
// Otherwise Text is rounded to the nearest number with Precision (34)
// significant digits and Exact is false. (Rounding is nominally half to
// even, but no tie can arise, since a value exactly halfway between two
// such numbers would have a terminating expansion.)
//
//	1/3         0.3333333333333333333333333333333333
//	2/3         0.6666666666666666666666666666666667
//	1/7*1000000 142857.1428571428571428571428571429
//	10^40/3     3333333333333333333333333333333333000000
//
// Text never uses exponent notation, has no trailing zeros after the
// decimal point (and no point for an integer), starts with "-" only when
// negative, and is "0" for zero.
//
// # Limits
//
// Evaluate bounds the work an expression can demand:
//
//   - MaxLength: an expression longer than 4096 bytes is KindTooLong.
//   - MaxDepth: parentheses and unary operators may nest at most 64
//     levels deep. Each '(' and each unary sign opens a level that lasts
//     to the end of its operand, so ((1)) and --1 are two levels deep and
//     -(-1) three; binary operators, including chains of ^, do not nest.
//     Deeper expressions are KindTooDeep.
//   - MaxDigits: every literal, intermediate value and result must have an
//     absolute value below 10^1000 and a denominator in lowest terms
//     below 10^1000 (at most 1000 digits); anything else is
//     KindOutOfRange. So 10^999 is fine but 10^1000 is out of range, as
//     is 10^-1000, whose denominator has 1001 digits; a literal such as
//     0.000…01 with 1000 decimal places is out of range too, while one
//     with 999 is fine. Powers are checked before they are computed, so
//     9^999999999 fails at once.
//
// Within these limits an exact Text has at most a few thousand digits.
package expr
