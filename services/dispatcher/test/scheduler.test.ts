import { describe, expect, it } from "vitest";
import { Scheduler } from "../src/domain/scheduler.ts";

const t = (id: string, priority = 5, scope: string[] = [], kind?: string) => ({
  id,
  priority,
  scope,
  ...(kind ? { kind } : {}),
});
const flush = () => new Promise((r) => setTimeout(r, 0));

/** Acquires and records the order in which tasks are admitted. */
function tracker(s: Scheduler) {
  const order: string[] = [];
  const releases = new Map<string, () => void>();
  const acquire = (task: ReturnType<typeof t>) =>
    s.acquire(task).then((release) => {
      order.push(task.id);
      releases.set(task.id, release);
    });
  return { order, acquire, release: (id: string) => releases.get(id)!() };
}

describe("Scheduler capacity and priority", () => {
  it("given a full pool, when a priority-1 task queues after priority-5 tasks, then it gets the next slot", async () => {
    const s = new Scheduler(1);
    const k = tracker(s);
    await k.acquire(t("first"));
    void k.acquire(t("p5a"));
    void k.acquire(t("p5b"));
    void k.acquire(t("p1", 1));
    expect(s.waiting).toBe(3);
    k.release("first");
    await flush();
    k.release("p1");
    await flush();
    k.release("p5a");
    await flush();
    expect(k.order).toEqual(["first", "p1", "p5a", "p5b"]);
  });

  it("given capacity 2, then never more than 2 run at once, and a double release is harmless", async () => {
    const s = new Scheduler(2);
    const k = tracker(s);
    await k.acquire(t("a"));
    await k.acquire(t("b"));
    void k.acquire(t("c"));
    await flush();
    expect(k.order).toEqual(["a", "b"]);
    k.release("a");
    k.release("a");
    await flush();
    expect(k.order).toEqual(["a", "b", "c"]);
    expect(s.active).toBe(2);
  });

  it("rejects a non-positive capacity", () => {
    expect(() => new Scheduler(0)).toThrow(RangeError);
  });
});

describe("Scheduler scope policy", () => {
  it("given exclusive, when a task overlaps a running scope, then it waits while a disjoint one runs", async () => {
    const s = new Scheduler(4, "exclusive");
    const k = tracker(s);
    await k.acquire(t("a", 5, ["src/app.ts", "src/a.ts"]));
    void k.acquire(t("b", 5, ["./src/app.ts"]));
    void k.acquire(t("c", 5, ["src/c.ts"]));
    await flush();
    expect(k.order).toEqual(["a", "c"]);
    k.release("a");
    await flush();
    expect(k.order).toEqual(["a", "c", "b"]);
  });

  it("given exclusive, then a lower-priority task may not take files an urgent blocked waiter needs", async () => {
    const s = new Scheduler(4, "exclusive");
    const k = tracker(s);
    await k.acquire(t("running", 5, ["x.ts"]));
    void k.acquire(t("urgent", 1, ["x.ts", "y.ts"])); // blocked by "running"
    void k.acquire(t("sneaky", 5, ["y.ts"])); // would block "urgent" later
    void k.acquire(t("unrelated", 5, ["z.ts"]));
    await flush();
    expect(k.order).toEqual(["running", "unrelated"]);
    k.release("running");
    await flush();
    expect(k.order).toEqual(["running", "unrelated", "urgent"]);
    k.release("urgent");
    await flush();
    expect(k.order.at(-1)).toBe("sneaky");
  });

  it("given advisory, then overlapping tasks run together", async () => {
    const s = new Scheduler(4, "advisory");
    const k = tracker(s);
    await k.acquire(t("a", 5, ["f.ts"]));
    await k.acquire(t("b", 5, ["f.ts"]));
    expect(k.order).toEqual(["a", "b"]);
  });

  it("given advisory, then conflict-fix tasks of the same files still run one at a time", async () => {
    const s = new Scheduler(4, "advisory");
    const k = tracker(s);
    await k.acquire(t("cf1", 1, ["f.ts"], "conflict-fix"));
    void k.acquire(t("cf2", 1, ["f.ts"], "conflict-fix"));
    await k.acquire(t("other", 5, ["f.ts"]));
    await flush();
    expect(k.order).toEqual(["cf1", "other"]);
    k.release("cf1");
    k.release("other");
    await flush();
    expect(k.order).toEqual(["cf1", "other", "cf2"]);
  });

  it("given empty scopes, then they never block each other", async () => {
    const s = new Scheduler(3, "exclusive");
    const k = tracker(s);
    await k.acquire(t("a"));
    await k.acquire(t("b"));
    expect(s.active).toBe(2);
  });
});
