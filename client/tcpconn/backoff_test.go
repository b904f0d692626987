package tcpconn

import (
	"testing"
	"time"

	"google.golang.org/grpc/backoff"
)

// TestDelay checks the connection backoff sequence with gRPC's numbers:
// exact without jitter (rnd 0.5), and at the ±20% bounds at rnd 0 and 1.
func TestDelay(t *testing.T) {
	def := withDefaults(backoff.Config{}, backoff.DefaultConfig)
	tests := []struct {
		retries int
		want    time.Duration // at rnd 0.5
	}{
		{0, time.Second},
		{1, 1600 * time.Millisecond},
		{2, 2560 * time.Millisecond},
		{3, 4096 * time.Millisecond},
		{4, 6553600 * time.Microsecond},
		{10, 109951162777},      // 1.6^10 s
		{11, 120 * time.Second}, // capped
		{50, 120 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			near := func(got, want time.Duration) bool {
				d := got - want
				return d > -time.Microsecond && d < time.Microsecond
			}
			if got := delay(def, tt.retries, 0.5); !near(got, tt.want) {
				t.Errorf("delay(%d) = %v, want %v", tt.retries, got, tt.want)
			}
			if got, want := delay(def, tt.retries, 0), tt.want*8/10; !near(got, want) {
				t.Errorf("delay(%d) at the low bound = %v, want %v", tt.retries, got, want)
			}
			if got, want := delay(def, tt.retries, 0.999999999), tt.want*12/10; !near(got, want) {
				t.Errorf("delay(%d) at the high bound = %v, want %v", tt.retries, got, want)
			}
		})
	}
}

// TestWithDefaults checks that a zero field takes the default and the
// others are kept.
func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		cfg  backoff.Config
		want backoff.Config
	}{
		{"zero", backoff.Config{}, backoff.DefaultConfig},
		{"short", backoff.Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
			backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 50 * time.Millisecond}},
		{"all set", backoff.Config{BaseDelay: 1, Multiplier: 2, Jitter: 0.5, MaxDelay: 3}, backoff.Config{BaseDelay: 1, Multiplier: 2, Jitter: 0.5, MaxDelay: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withDefaults(tt.cfg, backoff.DefaultConfig); got != tt.want {
				t.Fatalf("withDefaults(%+v) = %+v, want %+v", tt.cfg, got, tt.want)
			}
		})
	}
}

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
