package tcpconn

import (
	"time"

	"google.golang.org/grpc/backoff"
)

// DefaultMinConnectTimeout is the least time a Client gives one connection
// attempt, handshake included, as gRPC's MIN_CONNECT_TIMEOUT.
const DefaultMinConnectTimeout = 20 * time.Second

// defaultRetryBackoff spaces a Client's retries of failed idempotent calls
// (ClientOptions.RetryIdempotent).
var defaultRetryBackoff = backoff.Config{
	BaseDelay:  100 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   time.Second,
}

// withDefaults returns cfg with each zero field set to def's.
func withDefaults(cfg, def backoff.Config) backoff.Config {
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

// delay is the wait before attempt retries+1, as gRPC's connection backoff
// computes it: BaseDelay·Multiplier^retries, at most MaxDelay, then spread
// by ±Jitter; rnd, in [0, 1), picks the point in that spread (0.5 is none).
func delay(cfg backoff.Config, retries int, rnd float64) time.Duration {
	d := float64(cfg.BaseDelay)
	for ; retries > 0 && d < float64(cfg.MaxDelay); retries-- {
		d *= cfg.Multiplier
	}
	d = min(d, float64(cfg.MaxDelay))
	d *= 1 + cfg.Jitter*(rnd*2-1)
	return max(time.Duration(d), 0)
}
