package backoff

import (
	"testing"
	"time"

	grpcbackoff "google.golang.org/grpc/backoff"
)

// TestDelay checks the connection backoff sequence with gRPC's numbers:
// exact without jitter (rnd 0.5), and at the ±20% bounds at rnd 0 and 1.
func TestDelay(t *testing.T) {
	def := WithDefaults(grpcbackoff.Config{}, grpcbackoff.DefaultConfig)
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
			if got := Delay(def, tt.retries, 0.5); !near(got, tt.want) {
				t.Errorf("Delay(%d) = %v, want %v", tt.retries, got, tt.want)
			}
			if got, want := Delay(def, tt.retries, 0), tt.want*8/10; !near(got, want) {
				t.Errorf("Delay(%d) at the low bound = %v, want %v", tt.retries, got, want)
			}
			if got, want := Delay(def, tt.retries, 0.999999999), tt.want*12/10; !near(got, want) {
				t.Errorf("Delay(%d) at the high bound = %v, want %v", tt.retries, got, want)
			}
		})
	}
}

// TestWithDefaults checks that a zero field takes the default and the
// others are kept.
func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		cfg  grpcbackoff.Config
		want grpcbackoff.Config
	}{
		{"zero", grpcbackoff.Config{}, grpcbackoff.DefaultConfig},
		{"short", grpcbackoff.Config{BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
			grpcbackoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 50 * time.Millisecond}},
		{"all set", grpcbackoff.Config{BaseDelay: 1, Multiplier: 2, Jitter: 0.5, MaxDelay: 3}, grpcbackoff.Config{BaseDelay: 1, Multiplier: 2, Jitter: 0.5, MaxDelay: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WithDefaults(tt.cfg, grpcbackoff.DefaultConfig); got != tt.want {
				t.Fatalf("WithDefaults(%+v) = %+v, want %+v", tt.cfg, got, tt.want)
			}
		})
	}
}

// TestRetryDelay checks the retry backoff of idempotent calls.
func TestRetryDelay(t *testing.T) {
	tests := []struct {
		n    int
		rnd  float64
		want time.Duration
	}{
		{0, 0.5, 100 * time.Millisecond},
		{1, 0.5, 160 * time.Millisecond},
		{2, 0.5, 256 * time.Millisecond},
		{0, 0, 80 * time.Millisecond},       // -20%
		{0, 0.9999, 120 * time.Millisecond}, // almost +20%
		{10, 0.5, time.Second},              // capped
		{10, 0, 800 * time.Millisecond},
	}
	for _, tt := range tests {
		got := Delay(Retry, tt.n, tt.rnd)
		if d := got - tt.want; d > 100*time.Microsecond || d < -100*time.Microsecond {
			t.Errorf("Delay(Retry, %d, %v) = %v, want %v", tt.n, tt.rnd, got, tt.want)
		}
	}
}
