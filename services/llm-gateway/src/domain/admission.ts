/** Options of {@link AdmissionQueue}. */
export interface AdmissionOptions {
  /** Requests served at once (in flight to upstreams). Default 512. */
  maxConcurrent?: number;
  /** Requests waiting for a slot beyond `maxConcurrent`; past it, new requests are refused. Default 2 048. */
  maxQueue?: number;
  /** Longest wait in the queue before the request is refused (ms). Default 30 000. */
  queueTimeoutMs?: number;
}

/** Outcome of {@link AdmissionQueue.acquire}: a slot to release exactly once, or why there is none. */
export type Admission =
  | { ok: true; release: () => void; waitedMs: number }
  | { ok: false; reason: "queue_full" | "queue_timeout" | "aborted" };

interface Waiter {
  resolve: (a: Admission) => void;
  timer: NodeJS.Timeout | undefined;
  start: number;
  onAbort: (() => void) | undefined;
  signal: AbortSignal | undefined;
}

/**
 * A bounded FIFO admission queue (back-pressure): at most `maxConcurrent` holders; up to `maxQueue` waiters in
 * arrival order; a full queue refuses at once (the HTTP layer answers 429 with `Retry-After`), a waiter that
 * waited `queueTimeoutMs` is refused, and an aborted waiter leaves the queue.
 */
export class AdmissionQueue {
  private active = 0;
  private readonly waiters: Waiter[] = [];
  private readonly maxConcurrent: number;
  private readonly maxQueue: number;
  private readonly queueTimeoutMs: number;

  constructor(options: AdmissionOptions = {}) {
    this.maxConcurrent = Math.max(1, options.maxConcurrent ?? 512);
    this.maxQueue = Math.max(0, options.maxQueue ?? 2048);
    this.queueTimeoutMs = Math.max(0, options.queueTimeoutMs ?? 30_000);
  }

  /** Holders right now. */
  get running(): number {
    return this.active;
  }

  /** Waiters right now. */
  get queued(): number {
    return this.waiters.length;
  }

  private grant(start: number): Admission {
    this.active++;
    let released = false;
    return {
      ok: true,
      waitedMs: Date.now() - start,
      release: () => {
        if (released) return;
        released = true;
        this.active--;
        this.next();
      },
    };
  }

  private next(): void {
    while (this.active < this.maxConcurrent && this.waiters.length > 0) {
      const w = this.waiters.shift()!;
      this.cleanup(w);
      w.resolve(this.grant(w.start));
    }
  }

  private cleanup(w: Waiter): void {
    if (w.timer) clearTimeout(w.timer);
    if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
  }

  /** Waits for a slot (resolves at once when one is free or the queue is full). Never rejects. */
  acquire(signal?: AbortSignal): Promise<Admission> {
    const start = Date.now();
    if (signal?.aborted) return Promise.resolve({ ok: false, reason: "aborted" });
    if (this.active < this.maxConcurrent && this.waiters.length === 0) {
      return Promise.resolve(this.grant(start));
    }
    if (this.waiters.length >= this.maxQueue) return Promise.resolve({ ok: false, reason: "queue_full" });
    return new Promise<Admission>((resolve) => {
      const w: Waiter = { resolve, timer: undefined, start, onAbort: undefined, signal };
      const leave = (reason: "queue_timeout" | "aborted") => {
        const i = this.waiters.indexOf(w);
        if (i < 0) return;
        this.waiters.splice(i, 1);
        this.cleanup(w);
        resolve({ ok: false, reason });
      };
      w.timer = setTimeout(() => leave("queue_timeout"), this.queueTimeoutMs);
      w.timer.unref?.();
      if (signal) {
        w.onAbort = () => leave("aborted");
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.waiters.push(w);
    });
  }
}
