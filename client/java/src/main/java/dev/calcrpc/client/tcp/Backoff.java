package dev.calcrpc.client.tcp;

import java.time.Duration;

/**
 * How long to wait before attempt {@code retries + 1}, as gRPC's connection backoff computes it
 * (grpc/doc/connection-backoff.md): {@code baseDelay · multiplier^retries}, at most
 * {@code maxDelay}, then spread by ±{@code jitter}. Any positive values are accepted, so tests can
 * run with milliseconds.
 *
 * @param baseDelay the wait after the first failure
 * @param multiplier the growth per further failure, at least 1
 * @param jitter the spread, in [0, 1): 0.2 is ±20%
 * @param maxDelay the longest wait before the jitter
 */
public record Backoff(Duration baseDelay, double multiplier, double jitter, Duration maxDelay) {
  /** gRPC's connection backoff: 1 s, ×1.6 per failure up to 120 s, ±20%. */
  public static final Backoff CONNECTION = new Backoff(Duration.ofSeconds(1), 1.6, 0.2, Duration.ofSeconds(120));

  /** The spacing of retries of idempotent calls that failed UNAVAILABLE: 100 ms, ×1.6 up to 1 s, ±20%. */
  public static final Backoff RETRY = new Backoff(Duration.ofMillis(100), 1.6, 0.2, Duration.ofSeconds(1));

  /** Checks the values. */
  public Backoff {
    if (baseDelay == null || baseDelay.isNegative() || baseDelay.isZero()) {
      throw new IllegalArgumentException("baseDelay must be positive");
    }
    if (maxDelay == null || maxDelay.compareTo(baseDelay) < 0) {
      throw new IllegalArgumentException("maxDelay must be at least baseDelay");
    }
    if (!(multiplier >= 1)) {
      throw new IllegalArgumentException("multiplier must be at least 1");
    }
    if (!(jitter >= 0 && jitter < 1)) {
      throw new IllegalArgumentException("jitter must be in [0, 1)");
    }
  }

  /**
   * The wait before attempt {@code retries + 1}; rnd, in [0, 1), picks the point in the jitter's
   * spread (0.5 is none).
   */
  public Duration delay(int retries, double rnd) {
    double d = baseDelay.toNanos();
    double max = maxDelay.toNanos();
    for (; retries > 0 && d < max; retries--) {
      d *= multiplier;
    }
    d = Math.min(d, max);
    d *= 1 + jitter * (rnd * 2 - 1);
    return Duration.ofNanos(Math.max(0, (long) d));
  }
}
