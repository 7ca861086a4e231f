import { describe, expect, it } from "vitest";
import {
  type Candidate,
  cacheAwarePolicy,
  createPolicy,
  leastOutstandingPolicy,
  PrefixTree,
  promptKey,
  roundRobinPolicy,
  sessionAffinityPolicy,
} from "../src/index.ts";

const cands = (...loads: number[]): Candidate[] =>
  loads.map((load, i) => ({ name: `r${i}`, weight: 1, load }));

describe("round robin", () => {
  it("round-robin policy returns round_robin decisions", () => {
    const p = roundRobinPolicy();
    const names = Array.from({ length: 6 }, () => p.pick(cands(9, 0, 0), {})!.name);
    expect(names).toEqual(["r0", "r1", "r2", "r0", "r1", "r2"]);
    expect(p.pick([], {})).toBeUndefined();
  });
});

describe("least outstanding requests", () => {
  it("picks the smallest load per weight and rotates ties", () => {
    const p = leastOutstandingPolicy();
    expect(p.pick(cands(3, 1, 2), {})!.name).toBe("r1");
    const weighted: Candidate[] = [
      { name: "big", weight: 4, load: 4 },
      { name: "small", weight: 1, load: 2 },
    ];
    expect(p.pick(weighted, {})!.name).toBe("big");
    const ties = new Set(Array.from({ length: 3 }, () => p.pick(cands(0, 0, 0), {})!.name));
    expect(ties.size).toBe(3);
  });
});

describe("prefix tree", () => {
  it("matches whole chunks per tenant and evicts the least recently used", () => {
    const t = new PrefixTree({ chunkChars: 4, maxChunksPerTenant: 6 });
    t.insert("aaaabbbbcccc", "A");
    t.insert("aaaabbbbdddd", "B");
    const m = t.match("aaaabbbbccccXX");
    expect(m.totalChars).toBe(14);
    expect(m.matchedChars.get("A")).toBe(12);
    expect(m.matchedChars.get("B")).toBe(8);
    expect(t.match("zzzz").matchedChars.size).toBe(0);
    expect(t.size("A")).toBe(3);
    // A grows beyond 6 chunks: its oldest branch is evicted, leaves first.
    t.insert("eeeeffffgggghhhh", "A");
    expect(t.size("A")).toBeLessThanOrEqual(6);
    expect(t.match("eeeeffffgggghhhh").matchedChars.get("A")).toBe(16);
    expect(t.match("aaaabbbbcccc").matchedChars.get("A") ?? 0).toBeLessThan(12);
    expect(t.match("aaaabbbbdddd").matchedChars.get("B")).toBe(12);
  });

  it("removes a tenant and prunes empty nodes", () => {
    const t = new PrefixTree({ chunkChars: 2 });
    t.insert("abcdef", "A");
    t.insert("abxy", "B");
    expect(t.nodeCount()).toBe(4);
    t.removeTenant("A");
    expect(t.nodeCount()).toBe(2);
    expect(t.match("abcdef").matchedChars.get("A")).toBeUndefined();
    expect(t.match("abxy").matchedChars.get("B")).toBe(4);
  });
});

describe("cache-aware policy", () => {
  const system = "S".repeat(200);
  const agent = (id: string, turns: number) =>
    promptKey([
      { role: "system", content: system },
      { role: "user", content: `task ${id} ${"u".repeat(300)}` },
      ...Array.from({ length: turns }, (_, i) => ({
        role: "assistant",
        content: `turn ${i} ${"a".repeat(200)}`,
      })),
    ]);

  it("routes a growing prompt back to the replica that holds its prefix", () => {
    const p = cacheAwarePolicy({ chunkChars: 16 });
    const first = p.pick(cands(0, 0, 0), { prefixText: agent("x", 0) })!;
    expect(first.reason).toBe("cache_miss");
    p.record(first.name, { prefixText: agent("x", 0) });
    const next = p.pick(cands(0, 0, 0), { prefixText: agent("x", 1) })!;
    expect(next).toMatchObject({ name: first.name, reason: "cache_hit" });
    expect(next.matchRatio!).toBeGreaterThan(0.5);
  });

  it("sends a weak match (below the threshold) to the least-loaded replica", () => {
    const p = cacheAwarePolicy({ chunkChars: 16, threshold: 0.9 });
    p.record("r0", { prefixText: agent("x", 0) });
    const d = p.pick(cands(5, 1, 3), { prefixText: agent("y", 0) })!;
    expect(d).toMatchObject({ name: "r1", reason: "cache_miss" });
  });

  it("falls back to the least-loaded replica when the best match is overloaded", () => {
    const p = cacheAwarePolicy({ chunkChars: 16, balanceAbsThreshold: 4, balanceRelThreshold: 1.5 });
    p.record("r0", { prefixText: agent("x", 0) });
    expect(p.pick(cands(4, 1, 2), { prefixText: agent("x", 1) })!).toMatchObject({
      name: "r0",
      reason: "cache_hit",
    });
    expect(p.pick(cands(9, 1, 2), { prefixText: agent("x", 1) })!).toMatchObject({
      name: "r1",
      reason: "load_imbalance",
    });
  });

  it("sends new agents to the holder of a shared system prompt until the load guard spreads them", () => {
    const p = cacheAwarePolicy({ chunkChars: 16, balanceAbsThreshold: 1, balanceRelThreshold: 1.5 });
    const loads = [0, 0, 0];
    const reasons: string[] = [];
    for (const id of ["a", "b", "c", "d", "e", "f"]) {
      const input = { prefixText: agent(id, 0) };
      const d = p.pick(cands(...loads), input)!;
      p.record(d.name, input);
      reasons.push(d.reason);
      loads[Number(d.name.slice(1))]!++;
    }
    expect(reasons[0]).toBe("cache_miss");
    expect(reasons[1]).toBe("cache_hit"); // the system prompt alone is above the 0.3 threshold
    expect(reasons).toContain("load_imbalance");
    expect(loads).toEqual([2, 2, 2]);
  });

  it("forgets a removed replica", () => {
    const p = cacheAwarePolicy({ chunkChars: 16 });
    p.record("r0", { prefixText: agent("x", 0) });
    p.forget("r0");
    expect(p.pick(cands(0, 0), { prefixText: agent("x", 1) })!.reason).toBe("cache_miss");
  });
});

describe("session affinity", () => {
  it("keeps a task on its replica while it is a candidate, then moves it", () => {
    const p = sessionAffinityPolicy(roundRobinPolicy());
    const input = { affinityKey: "run/task-1" };
    const first = p.pick(cands(0, 0, 0), input)!;
    p.record(first.name, input);
    for (let i = 0; i < 5; i++)
      expect(p.pick(cands(0, 0, 0), input)).toEqual({ name: first.name, reason: "affinity" });
    const others = cands(0, 0, 0).filter((c) => c.name !== first.name);
    const moved = p.pick(others, input)!;
    expect(moved.name).not.toBe(first.name);
    p.record(moved.name, input);
    expect(p.pick(cands(0, 0, 0), input)).toEqual({ name: moved.name, reason: "affinity" });
    p.forget(moved.name);
    expect(p.sessions.has("run/task-1")).toBe(false);
  });

  it("is the default on top of cache-aware, and bounds its table", () => {
    const p = createPolicy();
    expect(p.name).toBe("session_affinity+cache_aware");
    expect(createPolicy("round_robin", { sessionAffinity: false }).name).toBe("round_robin");
    const small = sessionAffinityPolicy(roundRobinPolicy(), { maxSessions: 2 });
    for (const k of ["a", "b", "c"]) small.record("r0", { affinityKey: k });
    expect([...small.sessions.keys()]).toEqual(["b", "c"]);
  });
});
