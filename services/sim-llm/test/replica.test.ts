import { describe, expect, it } from "vitest";
import { mulberry32, PrefixCache, promptText, syntheticScript } from "../src/index.ts";

describe("replica prefix cache", () => {
  it("counts leading cached blocks and grows with the prompt", () => {
    const c = new PrefixCache(1000, 8);
    expect(c.lookupAndInsert("a".repeat(20))).toBe(0);
    expect(c.lookupAndInsert(`${"a".repeat(20)}bbbbbbbb`)).toBe(16); // 2 full blocks of the first prompt
    expect(c.lookupAndInsert(`${"a".repeat(8)}XXXXXXXX${"a".repeat(8)}`)).toBe(8); // stops at the first miss
    expect(c.lookupAndInsert("zzz")).toBe(0); // shorter than a block
  });

  it("evicts least recently used blocks beyond its capacity, and can be disabled", () => {
    const c = new PrefixCache(4, 8); // 4 tokens = 2 blocks of 8 chars
    c.lookupAndInsert("1111111122222222");
    c.lookupAndInsert("3333333344444444");
    expect(c.size).toBe(2);
    expect(c.lookupAndInsert("1111111122222222")).toBe(0);
    expect(new PrefixCache(0).lookupAndInsert("x".repeat(500))).toBe(0);
  });

  it("serializes prompts append-only", () => {
    const a = promptText([{ role: "user", content: "hi" }]);
    const b = promptText([
      { role: "user", content: "hi" },
      { role: "assistant", content: null, tool_calls: [{ function: { name: "bash", arguments: "{}" } }] },
    ]);
    expect(b.startsWith(a)).toBe(true);
  });
});

describe("replica helpers", () => {
  it("mulberry32 is deterministic and in [0, 1)", () => {
    const a = mulberry32(7);
    const b = mulberry32(7);
    const xs = Array.from({ length: 100 }, () => a());
    expect(xs).toEqual(Array.from({ length: 100 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it("builds a synthetic script of the requested length", () => {
    const s = syntheticScript("glm-5", 10);
    expect(s.model).toBe("glm-5");
    expect(s.conversations[0]!.turns[0]!.content).toHaveLength(40);
  });
});
