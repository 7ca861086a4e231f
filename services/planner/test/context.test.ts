import type { AcceptedRun } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { estimateTokens, fitPrompt, runDigest } from "../src/domain/context.ts";
import { applyPlan, buildTasks, initialRunState, type Turn } from "../src/domain/run.ts";

const RUN: AcceptedRun = {
  runId: "run-ctx",
  prompt: "build it",
  repo: "/repos/app",
  baseBranch: "main",
  maxWorkers: 4,
};

const turn = (role: Turn["role"], chars: number, tag = ""): Turn => ({
  role,
  content: `${tag}${"x".repeat(chars)}`,
});

/** A window: system, first request, then `n` exchanges of `chars` each. */
function windowOf(n: number, chars: number): Turn[] {
  const w: Turn[] = [turn("system", 400, "SYSTEM"), turn("user", 4000, "REQUEST")];
  for (let i = 0; i < n; i++) w.push(turn("user", chars, `U${i} `), turn("assistant", chars, `A${i} `));
  return w;
}

describe("fitPrompt", () => {
  it("given a window under the budget, then everything is sent as it is and nothing is compacted", () => {
    const w = windowOf(3, 400);
    const p = fitPrompt(w, turn("user", 400, "NEXT"), 10_000, () => "DIGEST", 6);
    expect(p.dropped).toBe(0);
    expect(p.messages).toEqual([...w, turn("user", 400, "NEXT")]);
    expect(p.messages.some((m) => m.content.includes("DIGEST"))).toBe(false);
  });

  it("given a long run, then the oldest exchanges are dropped, the anchor and the last reply kept, the digest added", () => {
    const w = windowOf(100, 4_000); // ~200k tokens of history
    const p = fitPrompt(w, turn("user", 2000, "NEXT"), 16_000, () => "DIGEST OF THE RUN", 1000);
    expect(p.dropped).toBeGreaterThan(0);
    expect(p.dropped % 2).toBe(0);
    expect(p.tokensAfter).toBeLessThanOrEqual(16_000);
    expect(p.tokensBefore).toBeGreaterThan(190_000);
    expect(p.messages[0]!.content.startsWith("SYSTEM")).toBe(true);
    expect(p.messages[1]!.content.startsWith("REQUEST")).toBe(true);
    expect(p.messages.at(-2)!.content.startsWith("A99 ")).toBe(true);
    const last = p.messages.at(-1)!;
    expect(last.content.startsWith("DIGEST OF THE RUN")).toBe(true);
    expect(last.content.endsWith("x")).toBe(true);
    // The window to keep is the prompt without the new message.
    expect(p.window).toEqual(p.messages.slice(0, -1));
  });

  it("keeps the prompt size flat as the run grows: 50 and 1000 exchanges cost the same", () => {
    const small = fitPrompt(windowOf(50, 2_000), turn("user", 2000), 32_000, () => "D", 1000);
    const big = fitPrompt(windowOf(1000, 2_000), turn("user", 2000), 32_000, () => "D", 1000);
    expect(big.tokensAfter).toBeLessThanOrEqual(32_000);
    expect(Math.abs(big.tokensAfter - small.tokensAfter)).toBeLessThan(2_000);
  });

  it("keeps at most the last 3 exchanges after the anchor, even under the budget", () => {
    const p = fitPrompt(windowOf(10, 100), turn("user", 100, "NEXT"), 1_000_000, () => "DIGEST");
    expect(p.dropped).toBe(14);
    expect(p.window.slice(2).map((t) => t.content.slice(0, 3))).toEqual([
      "U7 ",
      "A7 ",
      "U8 ",
      "A8 ",
      "U9 ",
      "A9 ",
    ]);
    expect(p.messages.at(-1)!.content.startsWith("DIGEST")).toBe(true);
  });

  it("estimates tokens as chars / 4", () => {
    expect(estimateTokens("abcd".repeat(10))).toBe(10);
  });
});

describe("runDigest", () => {
  it("stays bounded whatever the number of tasks, and says how many there are", () => {
    const digestFor = (n: number) => {
      let s = initialRunState(RUN, 0);
      const raw = Array.from({ length: n }, (_, i) => ({
        id: `task-${i}`,
        description: `Implement feature number ${i} with a reasonably long description of what it does`,
        scope: [`src/f${i}.ts`],
      }));
      const { tasks } = buildTasks(s, raw, { branchPrefix: "worker/" });
      s = applyPlan(s, [], tasks, 0);
      return runDigest(s);
    };
    const d50 = digestFor(50);
    const d1000 = digestFor(1000);
    expect(d1000).toContain("Tasks so far: 1000");
    expect(d1000).toContain("940 earlier in-flight tasks not listed");
    expect(estimateTokens(d1000)).toBeLessThan(estimateTokens(d50) * 1.5);
    expect(estimateTokens(d1000)).toBeLessThan(4_000);
  });
});
