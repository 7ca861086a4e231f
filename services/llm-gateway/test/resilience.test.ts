import { describe, expect, it } from "vitest";
import { AdmissionQueue, backoffDelay, CircuitBreaker, isRetryableStatus } from "../src/index.ts";

describe("circuit breaker", () => {
  it("opens after consecutive failures, half-opens after the cool-down, closes after trial successes", () => {
    const transitions: string[] = [];
    const b = new CircuitBreaker({ failureThreshold: 3, successThreshold: 2, openMs: 1000 });
    b.onTransition = (from, to) => transitions.push(`${from}->${to}`);
    for (let i = 0; i < 2; i++) {
      expect(b.tryAcquire(0)).toBe(true);
      b.record("failure", 0);
    }
    b.record("success", 0); // resets the count
    for (let i = 0; i < 3; i++) {
      expect(b.tryAcquire(10)).toBe(true);
      b.record("failure", 10);
    }
    expect(b.state(10)).toBe("open");
    expect(b.tryAcquire(500)).toBe(false);
    expect(b.state(1010)).toBe("half_open");
    expect(b.tryAcquire(1010)).toBe(true);
    expect(b.tryAcquire(1010)).toBe(false); // one trial at a time
    b.record("success", 1020);
    expect(b.state(1020)).toBe("half_open");
    expect(b.tryAcquire(1020)).toBe(true);
    b.record("success", 1030);
    expect(b.state(1030)).toBe("closed");
    expect(transitions).toEqual(["closed->open", "open->half_open", "half_open->closed"]);
  });

  it("re-opens on a failed trial, and neutral outcomes only free the trial slot", () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 100 });
    b.tryAcquire(0);
    b.record("failure", 0);
    expect(b.state(50)).toBe("open");
    expect(b.tryAcquire(100)).toBe(true);
    b.record("neutral", 100);
    expect(b.state(100)).toBe("half_open");
    expect(b.tryAcquire(100)).toBe(true);
    b.record("failure", 120);
    expect(b.state(150)).toBe("open");
    expect(b.state(220)).toBe("half_open");
    // stragglers reporting while open do not extend the cool-down
    const c = new CircuitBreaker({ failureThreshold: 1, openMs: 100 });
    c.record("failure", 0);
    c.record("failure", 90);
    expect(c.state(100)).toBe("half_open");
  });
});

describe("backoff", () => {
  it("doubles up to the cap with bounded jitter", () => {
    const opts = { baseMs: 10, maxMs: 100, jitter: 0.5 };
    expect(backoffDelay(0, opts, () => 0)).toBe(5);
    expect(backoffDelay(0, opts, () => 0.999999)).toBeCloseTo(10, 3);
    expect(backoffDelay(2, opts, () => 1)).toBe(40);
    expect(backoffDelay(10, opts, () => 1)).toBe(100);
    expect(backoffDelay(3, { ...opts, jitter: 0 }, () => 0.3)).toBe(80);
  });

  it("retries 408, 429 and 5xx only", () => {
    expect([408, 429, 500, 502, 503, 504].every(isRetryableStatus)).toBe(true);
    expect([400, 401, 404, 409, 413, 422].some(isRetryableStatus)).toBe(false);
  });
});

describe("admission queue", () => {
  it("admits up to maxConcurrent, queues FIFO, refuses when full", async () => {
    const q = new AdmissionQueue({ maxConcurrent: 1, maxQueue: 2, queueTimeoutMs: 60_000 });
    const a = await q.acquire();
    expect(a.ok).toBe(true);
    const order: string[] = [];
    const track = (name: string) => (x: Awaited<ReturnType<typeof q.acquire>>) => {
      order.push(name);
      return x;
    };
    const b = q.acquire().then(track("b"));
    const c = q.acquire().then(track("c"));
    expect(q.queued).toBe(2);
    expect(await q.acquire()).toEqual({ ok: false, reason: "queue_full" });
    if (a.ok) a.release();
    const rb = await b;
    expect(rb.ok).toBe(true);
    if (rb.ok) {
      rb.release();
      rb.release(); // idempotent
    }
    const rc = await c;
    expect(order).toEqual(["b", "c"]);
    expect(q.running).toBe(1);
    if (rc.ok) rc.release();
    expect(q.running).toBe(0);
  });

  it("refuses after the queue timeout and leaves on abort", async () => {
    const q = new AdmissionQueue({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 20 });
    const a = await q.acquire();
    expect(await q.acquire()).toEqual({ ok: false, reason: "queue_timeout" });
    const ac = new AbortController();
    const w = q.acquire(ac.signal);
    ac.abort();
    expect(await w).toEqual({ ok: false, reason: "aborted" });
    expect(q.queued).toBe(0);
    if (a.ok) a.release();
  });
});
