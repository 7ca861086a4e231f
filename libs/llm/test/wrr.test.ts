import { describe, expect, it } from "vitest";
import { SmoothWeightedRoundRobin } from "../src/wrr.ts";

describe("smooth weighted round robin", () => {
  it("spreads weights 5/1/1 like nginx", () => {
    const wrr = new SmoothWeightedRoundRobin();
    const entries = [
      { name: "a", weight: 5 },
      { name: "b", weight: 1 },
      { name: "c", weight: 1 },
    ];
    const seq = Array.from({ length: 7 }, () => wrr.pick(entries));
    expect(seq).toEqual(["a", "a", "b", "a", "c", "a", "a"]);
  });

  it("keeps exact proportions over many picks and copes with a changing set", () => {
    const wrr = new SmoothWeightedRoundRobin();
    const counts: Record<string, number> = {};
    const entries = [
      { name: "a", weight: 3 },
      { name: "b", weight: 2 },
    ];
    for (let i = 0; i < 500; i++) {
      const n = wrr.pick(entries)!;
      counts[n] = (counts[n] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 300, b: 200 });
    expect(wrr.pick([{ name: "c", weight: 1 }])).toBe("c");
    expect(wrr.pick([])).toBeUndefined();
  });

  it("gives ties to the first entry, counts non-positive weights as 1 and restarts a forgotten entry at 0", () => {
    const wrr = new SmoothWeightedRoundRobin();
    const entries = [
      { name: "a", weight: 0 },
      { name: "b", weight: -2 },
    ];
    expect(Array.from({ length: 4 }, () => wrr.pick(entries))).toEqual(["a", "b", "a", "b"]);
    wrr.pick([{ name: "a", weight: 1 }]); // a: 0 + 1 - 1 = 0; b keeps its score of 0
    wrr.pick(entries); // a 1, b 1 -> a (first), a -1
    wrr.forget("a");
    expect(wrr.pick(entries)).toBe("b"); // a restarts at 0 + 1, b has 1 + 1
  });
});
