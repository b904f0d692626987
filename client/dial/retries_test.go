package dial

import (
	"testing"
	"time"
)

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
		got := retryDelay(tt.n, tt.rnd)
		if d := got - tt.want; d > 100*time.Microsecond || d < -100*time.Microsecond {
			t.Errorf("retryDelay(%d, %v) = %v, want %v", tt.n, tt.rnd, got, tt.want)
		}
	}
}
