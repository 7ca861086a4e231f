/**
 * Handler errors that steer acknowledgement (see DESIGN.md "Ack semantics"). Handlers throw; only the consume
 * wrapper decides: success → ack, RetryableError → nak(delayMs), TerminalError → term + error event.
 * Any other thrown value is treated as retryable with the default delay.
 */
export class RetryableError extends Error {
  override readonly name = "RetryableError";
  /** How long to wait before redelivery, in ms. */
  readonly delayMs: number;
  constructor(message: string, opts: { delayMs?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.delayMs = opts.delayMs ?? 2000;
  }
}

/** A message that can never succeed (bad payload, impossible request): terminated, never redelivered. */
export class TerminalError extends Error {
  override readonly name = "TerminalError";
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
  }
}

/**
 * Whether `err` is a KV compare-and-set conflict: `update` with a stale revision, or `create` of a key that exists.
 * Both raise JetStream API error 10071 (`StreamWrongLastSequence`; api-facts §1.6, §1.9).
 */
export function isKvConflict(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 10071;
}

/** Normalizes anything thrown into an Error (Restate's `ensureError`). */
export function ensureError(e: unknown): Error {
  if (e instanceof Error) return e;
  return new Error(typeof e === "string" ? e : JSON.stringify(e));
}
