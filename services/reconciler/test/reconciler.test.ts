import { describe, expect, it } from "vitest";
import { SweepCoalescer } from "../src/domain/coalesce.ts";

describe("SweepCoalescer", () => {
  it("given a running sweep, when three requests arrive, then they share one follow-up sweep", async () => {
    let runs = 0;
    const gates: (() => void)[] = [];
    const c = new SweepCoalescer(async () => {
      const n = ++runs;
      await new Promise<void>((r) => gates.push(r));
      return n;
    });
    const first = c.request("run-1");
    const a = c.request("run-1");
    const b = c.request("run-1");
    const d = c.request("run-1");
    expect(runs).toBe(1);
    gates.shift()!();
    expect(await first).toBe(1);
    await new Promise((r) => setTimeout(r, 0));
    expect(runs).toBe(2);
    gates.shift()!();
    expect(await Promise.all([a, b, d])).toEqual([2, 2, 2]);
    // afterwards a new request starts a fresh sweep
    const e = c.request("run-1");
    await new Promise((r) => setTimeout(r, 0));
    gates.shift()!();
    expect(await e).toBe(3);
  });
});
