import type { SweepCheck } from "@longshot/contracts";
import { describe, expect, it } from "vitest";
import { FixTasksOutput, fixPrompt } from "../src/adapters/fixer.ts";
import { afterSweep } from "../src/domain/schedule.ts";
import { failureSignature, normalizeOutput } from "../src/domain/signature.ts";

const check = (name: SweepCheck["name"], ok: boolean, output: string): SweepCheck => ({
  name,
  command: `npm run ${name}`,
  ok,
  exitCode: ok ? 0 : 1,
  output,
  durationMs: 10,
});

describe("failureSignature", () => {
  it("given the same failure on another commit with other timings and temp paths, then the signature is equal", () => {
    const a = [
      check(
        "test",
        false,
        "✖ adds (1.23ms)\n at /tmp/longshot-sweep-AbC/repo/test/a.test.ts:12:5\ncommit 1a2b3c4d5e",
      ),
    ];
    const b = [
      check(
        "test",
        false,
        "✖ adds (9.87ms)\n at /tmp/longshot-sweep-XyZ/repo/test/a.test.ts:14:9\ncommit 9f8e7d6c5b",
      ),
    ];
    expect(failureSignature(a, [])).toBe(failureSignature(b, []));
  });

  it("given a different failing test or an extra conflict file, then the signature differs", () => {
    const a = [check("test", false, "✖ adds")];
    expect(failureSignature(a, [])).not.toBe(failureSignature([check("test", false, "✖ removes")], []));
    expect(failureSignature(a, [])).not.toBe(failureSignature(a, ["src/app.ts"]));
  });

  it("given more passing tests in the output (later merges), then the signature stays the same", () => {
    const before = [
      check(
        "test",
        false,
        "✔ a (1ms)\n✖ login rejects bad email\nAssertionError: expected 400\nℹ pass 3\nℹ fail 1",
      ),
    ];
    const after = [
      check(
        "test",
        false,
        "✔ a (1ms)\n✔ b (2ms)\n✔ c (1ms)\n✖ login rejects bad email\nAssertionError: expected 400\nℹ pass 5\nℹ fail 1",
      ),
    ];
    expect(failureSignature(before, [])).toBe(failureSignature(after, []));
  });

  it("ignores passing checks", () => {
    const failing = check("test", false, "✖ adds");
    expect(failureSignature([failing, check("build", true, "ok 123")], [])).toBe(
      failureSignature([failing], []),
    );
  });

  it("normalizes ANSI codes and numbers", () => {
    expect(normalizeOutput("\u001b[31mfail 3\u001b[39m")).toBe("fail <n>");
  });
});

describe("afterSweep", () => {
  const p = { redIntervalMs: 60_000, greenIntervalMs: 300_000, greenStreak: 3 };
  it("given a red sweep, then the short interval and the streak resets", () => {
    expect(afterSweep({ greens: 5 }, false, p)).toEqual({ state: { greens: 0 }, delayMs: 60_000 });
  });
  it("given greens after red, then short until the third green, then long", () => {
    let s = { greens: 0 };
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = afterSweep(s, true, p);
      s = r.state;
      delays.push(r.delayMs);
    }
    expect(delays).toEqual([60_000, 60_000, 300_000, 300_000]);
  });
});

describe("fix tasks from the model", () => {
  it("given more than 5 tasks and long scopes, then 5 tasks with ≤ 3 files each", () => {
    const raw = Array.from({ length: 7 }, (_, i) => ({
      id: `m-${i}`,
      description: `fix ${i}`,
      scope: ["a", "b", "c", "d"],
    }));
    const out = FixTasksOutput.parse(raw);
    expect(out).toHaveLength(5);
    expect(out[0]).toEqual({
      description: "fix 0",
      scope: ["a", "b", "c"],
      acceptance: "the failing check passes",
    });
  });
  it("puts conflict markers before test output in the prompt and cites the command", () => {
    const prompt = fixPrompt(
      "abcdef1234567",
      "main",
      [check("test", false, "✖ adds"), check("conflict-markers", false, "src/x.ts")],
      ["src/x.ts"],
    );
    expect(prompt.indexOf("Conflict markers")).toBeLessThan(prompt.indexOf("test failed"));
    expect(prompt).toContain("$ npm run test");
  });
});
