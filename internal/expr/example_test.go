package expr_test

import (
	"errors"
	"fmt"

	"github.com/calcrpc/calc/internal/expr"
)

func ExampleEvaluate() {
	for _, s := range []string{
		"0.1 + 0.2",
		"2 * (3 + 4) - 10 / 4",
		"-2^2 + 2^-1",
		"-7 % 3",
		"2/3",
		"1 + 2 / 0",
		"2 (3)",
	} {
		r, err := expr.Evaluate(s)
		var e *expr.Error
		if errors.As(err, &e) {
			fmt.Printf("%-22s %v (%v)\n", s, e, e.Kind)
			continue
		}
		fmt.Printf("%-22s %s (exact: %t, value: %v)\n", s, r.Text, r.Exact, r.Value.RatString())
	}
	// Output:
	// 0.1 + 0.2              0.3 (exact: true, value: 3/10)
	// 2 * (3 + 4) - 10 / 4   11.5 (exact: true, value: 23/2)
	// -2^2 + 2^-1            -3.5 (exact: true, value: -7/2)
	// -7 % 3                 -1 (exact: true, value: -1)
	// 2/3                    0.6666666666666666666666666666666667 (exact: false, value: 2/3)
	// 1 + 2 / 0              expr: division by zero at offset 6 (division by zero)
	// 2 (3)                  expr: unexpected '(' at offset 2 (syntax error)
}
