import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createThrottle } from "../src/domain/throttle.ts";

describe("progress throttle", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends the first item at once, coalesces a burst, and sends its last item when the interval ends", () => {
    const sent: string[] = [];
    const t = createThrottle<string>(500, (s) => sent.push(s));
    t.push("worker started");
    t.push("tool write");
    t.push("tool bash");
    expect(sent).toEqual(["worker started"]);
    vi.advanceTimersByTime(499);
    expect(sent).toEqual(["worker started"]);
    vi.advanceTimersByTime(1);
    // The latest activity is not lost: it goes out at the end of the interval.
    expect(sent).toEqual(["worker started", "tool bash"]);
    // A quiet interval later, the next item goes out at once again.
    vi.advanceTimersByTime(2000);
    t.push("tool edit");
    expect(sent).toEqual(["worker started", "tool bash", "tool edit"]);
  });

  it("never sends more than one item per interval", () => {
    const times: number[] = [];
    const t = createThrottle<number>(500, () => times.push(Date.now()));
    for (let i = 0; i < 40; i++) {
      t.push(i);
      vi.advanceTimersByTime(100);
    }
    vi.advanceTimersByTime(1000);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(500);
    expect(times.length).toBe(9);
  });

  it("drops the pending item when cancelled", () => {
    const sent: string[] = [];
    const t = createThrottle<string>(500, (s) => sent.push(s));
    t.push("a");
    t.push("b");
    t.cancel();
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual(["a"]);
  });
});
