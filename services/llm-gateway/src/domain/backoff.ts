/** Options of {@link backoffDelay}. */
export interface BackoffOptions {
  /** Delay before the first retry, before jitter (ms). Default 25. */
  baseMs?: number;
  /** Upper bound of the delay before jitter (ms). Default 1 000. */
  maxMs?: number;
  /** Fraction of the delay that is random (0..1). Default 0.5: the delay is uniform in [d/2, d]. */
  jitter?: number;
}

/**
 * Exponential backoff with jitter: d = min(maxMs, baseMs × 2^retry), then a uniform draw in
 * [d × (1 − jitter), d]. `retry` counts from 0 (the first retry). `random` returns a number in [0, 1).
 * @returns the delay in ms (≥ 0).
 */
export function backoffDelay(
  retry: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const base = Math.max(0, options.baseMs ?? 25);
  const max = Math.max(base, options.maxMs ?? 1000);
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
  const d = Math.min(max, base * 2 ** Math.max(0, retry));
  return d * (1 - jitter) + d * jitter * random();
}

/** Whether an upstream HTTP status is retried: 408, 429 and 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
