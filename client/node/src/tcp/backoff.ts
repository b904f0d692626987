// Backoff as gRPC's connection-backoff spec computes it
// (doc/connection-backoff.md): the n-th retry waits
// baseDelay·multiplier^n, at most maxDelay, spread by ±jitter.

/** Spacing of repeated attempts. Every field is optional; missing ones take the defaults of where it is used. */
export interface BackoffOptions {
  /** Delay before the first retry, in milliseconds. */
  baseDelayMs?: number;
  /** Factor by which the delay grows per retry (at least 1). */
  multiplier?: number;
  /** Relative spread of each delay, 0 to 1: 0.2 is ±20%. */
  jitter?: number;
  /** Largest delay, before jitter, in milliseconds. */
  maxDelayMs?: number;
}

/** gRPC's connection backoff: 1 s, ×1.6 per failure, ±20%, at most 120 s. */
export const CONNECTION_BACKOFF: Readonly<Required<BackoffOptions>> = Object.freeze({
  baseDelayMs: 1000,
  multiplier: 1.6,
  jitter: 0.2,
  maxDelayMs: 120_000,
});

/** The spacing of retried idempotent calls (as the Go client's): 100 ms, ×1.6, ±20%, at most 1 s. */
export const RETRY_BACKOFF: Readonly<Required<BackoffOptions>> = Object.freeze({
  baseDelayMs: 100,
  multiplier: 1.6,
  jitter: 0.2,
  maxDelayMs: 1000,
});

/** Returns o with its missing fields taken from def; throws a RangeError for values out of range. */
export function backoffWithDefaults(o: BackoffOptions | undefined, def: Readonly<Required<BackoffOptions>>): Required<BackoffOptions> {
  const b = {
    baseDelayMs: o?.baseDelayMs ?? def.baseDelayMs,
    multiplier: o?.multiplier ?? def.multiplier,
    jitter: o?.jitter ?? def.jitter,
    maxDelayMs: o?.maxDelayMs ?? def.maxDelayMs,
  };
  if (!(b.baseDelayMs > 0) || !(b.maxDelayMs >= b.baseDelayMs) || !(b.multiplier >= 1) || !(b.jitter >= 0 && b.jitter <= 1)) {
    throw new RangeError(`backoff out of range: ${JSON.stringify(b)} (need 0 < baseDelayMs <= maxDelayMs, multiplier >= 1, 0 <= jitter <= 1)`);
  }
  return b;
}

/**
 * The wait before retry number retries+1 (0 is the first retry):
 * baseDelayMs·multiplier^retries, at most maxDelayMs, then spread by
 * ±jitter; rnd, in [0, 1), picks the point in that spread (0.5 is none).
 */
export function backoffDelay(b: Required<BackoffOptions>, retries: number, rnd: number = Math.random()): number {
  let d = b.baseDelayMs;
  for (let n = retries; n > 0 && d < b.maxDelayMs; n--) {
    d *= b.multiplier;
  }
  d = Math.min(d, b.maxDelayMs);
  return Math.max(0, d * (1 + b.jitter * (rnd * 2 - 1)));
}
