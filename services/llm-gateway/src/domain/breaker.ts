/** Circuit-breaker states. */
export type BreakerState = "closed" | "open" | "half_open";

/** Options of {@link CircuitBreaker}. */
export interface BreakerOptions {
  /** Consecutive failures that open a closed circuit. Default 5. */
  failureThreshold?: number;
  /** Successful trial requests in half-open state that close the circuit. Default 2. */
  successThreshold?: number;
  /** How long an open circuit rejects requests before it lets trials through (ms). Default 10 000. */
  openMs?: number;
  /** Trial requests allowed in flight at once while half-open. Default 1. */
  halfOpenMaxInFlight?: number;
}

/** The outcome of one request, as far as the breaker is concerned. */
export type BreakerOutcome = "success" | "failure" | "neutral";

/**
 * A per-upstream circuit breaker, pure (time is passed in, in ms).
 * - closed: every request passes; `failureThreshold` consecutive failures open it.
 * - open: no request passes until `openMs` elapsed, then it is half-open.
 * - half-open: up to `halfOpenMaxInFlight` trial requests at a time; `successThreshold` successes close it,
 *   one failure re-opens it (for another `openMs`).
 * Callers ask {@link tryAcquire} before dispatching and report exactly one {@link record} per acquired request
 * ("neutral" for outcomes that say nothing about the upstream's health, e.g. a 4xx or a client abort).
 */
export class CircuitBreaker {
  private st: BreakerState = "closed";
  private failures = 0;
  private successes = 0;
  private openedAt = 0;
  private trials = 0;
  private readonly failureThreshold: number;
  private readonly successThreshold: number;
  private readonly openMs: number;
  private readonly halfOpenMax: number;
  /** Called on every state change (old → new). */
  onTransition: ((from: BreakerState, to: BreakerState) => void) | undefined;

  constructor(options: BreakerOptions = {}) {
    this.failureThreshold = Math.max(1, options.failureThreshold ?? 5);
    this.successThreshold = Math.max(1, options.successThreshold ?? 2);
    this.openMs = Math.max(0, options.openMs ?? 10_000);
    this.halfOpenMax = Math.max(1, options.halfOpenMaxInFlight ?? 1);
  }

  private to(next: BreakerState): void {
    if (next === this.st) return;
    const from = this.st;
    this.st = next;
    this.onTransition?.(from, next);
  }

  /** The state at time `now` (ms): an open circuit whose `openMs` elapsed reads as half-open. */
  state(now: number): BreakerState {
    if (this.st === "open" && now - this.openedAt >= this.openMs) {
      this.successes = 0;
      this.trials = 0;
      this.to("half_open");
    }
    return this.st;
  }

  /** Whether a request may be sent now (without taking a trial slot). */
  canRequest(now: number): boolean {
    const s = this.state(now);
    return s === "closed" || (s === "half_open" && this.trials < this.halfOpenMax);
  }

  /**
   * Takes permission to send one request at `now`. @returns false when the circuit is open or the half-open
   * trial slots are taken; when true, exactly one {@link record} must follow.
   */
  tryAcquire(now: number): boolean {
    if (!this.canRequest(now)) return false;
    if (this.st === "half_open") this.trials++;
    return true;
  }

  /** Reports the outcome of a request acquired with {@link tryAcquire}. */
  record(outcome: BreakerOutcome, now: number): void {
    const s = this.state(now);
    if (s === "half_open" && this.trials > 0) this.trials--;
    if (outcome === "neutral") return;
    if (outcome === "success") {
      if (s === "closed") this.failures = 0;
      else if (s === "half_open" && ++this.successes >= this.successThreshold) {
        this.failures = 0;
        this.to("closed");
      }
      return;
    }
    if (s === "closed") {
      if (++this.failures >= this.failureThreshold) this.open(now);
    } else if (s === "half_open") this.open(now);
    // already open: stays open, the cool-down is not extended by stragglers
  }

  /** Forces the circuit open at `now` (e.g. an operator action). */
  open(now: number): void {
    this.openedAt = now;
    this.failures = 0;
    this.successes = 0;
    this.trials = 0;
    this.to("open");
  }

  /** Consecutive failures counted while closed. */
  get consecutiveFailures(): number {
    return this.failures;
  }
}
