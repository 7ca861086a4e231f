import { describe, expect, it, vi } from "vitest";
import {
  acquirePlanningLease,
  claimLease,
  heldByOther,
  holdingPlanningLease,
  instanceId,
  type PlanningLease,
  releaseLease,
} from "../src/planning-lease.ts";

/** An actor holding its state in memory (the KV compare-and-set is covered by the cas integration test). */
function memoryActor(planningLease?: PlanningLease) {
  return {
    state: { planningLease } as { planningLease?: PlanningLease },
    writes: 0,
    async mutate(fn: (s: { planningLease?: PlanningLease }) => { planningLease?: PlanningLease }) {
      const next = fn(this.state);
      if (next !== this.state) this.writes++;
      this.state = next;
    },
  };
}

describe("planning lease", () => {
  it("given no lease, when an instance claims it, then it holds it for the TTL", () => {
    expect(claimLease(undefined, "a", 1_000, 60_000)).toEqual({ owner: "a", expiresAt: 61_000 });
  });

  it("given another instance holds it, when claimed before it expires, then it is unchanged; after, it passes on", () => {
    const held = { owner: "a", expiresAt: 61_000 };
    expect(claimLease(held, "b", 60_999)).toBe(held);
    expect(heldByOther(held, "b", 60_999)).toBe(true);
    expect(claimLease(held, "b", 61_000, 60_000)).toEqual({ owner: "b", expiresAt: 121_000 });
    expect(heldByOther(held, "b", 61_000)).toBe(false);
  });

  it("given its own lease, when the holder claims again (a renewal or a restart), then it is extended", () => {
    expect(claimLease({ owner: "a", expiresAt: 61_000 }, "a", 30_000, 60_000)).toEqual({
      owner: "a",
      expiresAt: 90_000,
    });
    expect(heldByOther({ owner: "a", expiresAt: 61_000 }, "a", 30_000)).toBe(false);
  });

  it("is released only by its holder", () => {
    const held = { owner: "a", expiresAt: 61_000 };
    expect(releaseLease(held, "b")).toBe(held);
    expect(releaseLease(held, "a")).toBeUndefined();
  });

  it("names an instance by host and LONGSHOT_INSTANCE", () => {
    expect(instanceId("box", undefined)).toBe("box/1");
    expect(instanceId("box", "2")).toBe("box/2");
  });

  it("given a free lease, when acquired, then the caller holds it and need not wait", async () => {
    const actor = memoryActor();
    expect(await acquirePlanningLease(actor, "a", 60_000)).toBeUndefined();
    expect(actor.state.planningLease?.owner).toBe("a");
  });

  it("given another holder, when acquired, then nothing is written and the wait is bounded to 50 ms .. 5 s", async () => {
    const actor = memoryActor({ owner: "b", expiresAt: Date.now() + 60_000 });
    expect(await acquirePlanningLease(actor, "a")).toBe(5_000);
    expect(actor.writes).toBe(0);
    actor.state = { planningLease: { owner: "b", expiresAt: Date.now() + 1_000 } };
    const wait = (await acquirePlanningLease(actor, "a"))!;
    expect(wait).toBeGreaterThan(900);
    expect(wait).toBeLessThanOrEqual(1_050);
  });

  it("renews the holder's lease every third of its TTL while the work runs, and stops after", async () => {
    vi.useFakeTimers();
    try {
      const actor = memoryActor({ owner: "a", expiresAt: Date.now() + 3_000 });
      let finish!: (v: string) => void;
      const result = holdingPlanningLease(actor, "a", () => new Promise<string>((r) => (finish = r)), {
        ttlMs: 3_000,
        onRenewError: () => {},
      });
      await vi.advanceTimersByTimeAsync(2_500);
      expect(actor.writes).toBe(2);
      expect(actor.state.planningLease!.expiresAt).toBe(Date.now() - 500 + 3_000);
      finish("done");
      expect(await result).toBe("done");
      await vi.advanceTimersByTimeAsync(5_000);
      expect(actor.writes).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
