package tcpconn

import "testing"

// TestParseTarget checks the target syntax.
func TestParseTarget(t *testing.T) {
	tests := []struct {
		in     string
		static []string
		host   string
		bad    bool
	}{
		{in: "127.0.0.1:4000", static: []string{"127.0.0.1:4000"}},
		{in: "a:4000, b:4001", static: []string{"a:4000", "b:4001"}},
		{in: "[::1]:4000", static: []string{"[::1]:4000"}},
		{in: "dns:///calc.internal:4000", host: "calc.internal"},
		{in: "calc.internal", bad: true},
		{in: "a:4000,", bad: true},
		{in: "dns:///calc.internal", bad: true},
		{in: "http://a:4000", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTarget(tt.in)
			switch {
			case tt.bad && err == nil:
				t.Fatalf("parseTarget(%q) = %+v, want an error", tt.in, got)
			case !tt.bad && err != nil:
				t.Fatal(err)
			case !tt.bad && (len(got.static) != len(tt.static) || got.host != tt.host):
				t.Fatalf("parseTarget(%q) = %+v", tt.in, got)
			}
			for i := range tt.static {
				if got.static[i] != tt.static[i] {
					t.Fatalf("parseTarget(%q) = %+v", tt.in, got)
				}
			}
		})
	}
}
