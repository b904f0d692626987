// Package backoff computes calc's clients' waits between attempts as
// gRPC's connection backoff does (BaseDelay·Multiplier^retries, at most
// MaxDelay, spread by ±Jitter): tcpconn's reconnects and retries, and
// dial's retries of gRPC calls, from one formula.
package backoff

import (
	"time"

	grpcbackoff "google.golang.org/grpc/backoff"
)

// Retry spaces the retries of failed idempotent calls: 100 ms, ×1.6, ±20%,
// at most 1 s.
var Retry = grpcbackoff.Config{
	BaseDelay:  100 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   time.Second,
}

// WithDefaults returns cfg with each zero (or invalid) field set to def's.
func WithDefaults(cfg, def grpcbackoff.Config) grpcbackoff.Config {
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = def.BaseDelay
	}
	if cfg.Multiplier < 1 {
		cfg.Multiplier = def.Multiplier
	}
	if cfg.Jitter <= 0 {
		cfg.Jitter = def.Jitter
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = def.MaxDelay
	}
	return cfg
}

// Delay is the wait before attempt retries+1: BaseDelay·Multiplier^retries,
// at most MaxDelay, then spread by ±Jitter; rnd, in [0, 1), picks the point
// in that spread (0.5 is none).
func Delay(cfg grpcbackoff.Config, retries int, rnd float64) time.Duration {
	d := float64(cfg.BaseDelay)
	for ; retries > 0 && d < float64(cfg.MaxDelay); retries-- {
		d *= cfg.Multiplier
	}
	d = min(d, float64(cfg.MaxDelay))
	d *= 1 + cfg.Jitter*(rnd*2-1)
	return max(time.Duration(d), 0)
}
