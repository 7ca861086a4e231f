import { describe, expect, it } from "vitest";
import { PrioritySlots } from "../src/domain/slots.ts";

describe("PrioritySlots", () => {
  it("given a full pool, when a priority-1 task queues after priority-5 tasks, then it gets the next slot", async () => {
    const slots = new PrioritySlots(1);
    const order: string[] = [];
    const releaseFirst = await slots.acquire(5);
    const track = (name: string) => (release: () => void) => {
      order.push(name);
      return release;
    };
    const p5a = slots.acquire(5).then(track("p5a"));
    const p5b = slots.acquire(5).then(track("p5b"));
    const p1 = slots.acquire(1).then(track("p1"));
    expect(slots.waiting).toBe(3);
    releaseFirst();
    (await p1)();
    (await p5a)();
    (await p5b)();
    expect(order).toEqual(["p1", "p5a", "p5b"]);
    expect(slots.active).toBe(0);
  });

  it("given capacity 2, then never more than 2 run at once, and a double release is harmless", async () => {
    const slots = new PrioritySlots(2);
    const a = await slots.acquire(5);
    await slots.acquire(5);
    let third = false;
    const c = slots.acquire(5).then((release) => {
      third = true;
      return release;
    });
    await Promise.resolve();
    expect(third).toBe(false);
    a();
    a();
    await c;
    expect(slots.active).toBe(2);
  });

  it("rejects a non-positive capacity", () => {
    expect(() => new PrioritySlots(0)).toThrow(RangeError);
  });
});
