import { describe, expect, it } from "vitest";
import {
  emptyQueue,
  enqueue,
  finish,
  isBusy,
  type MergeQueue,
  peekNext,
  pendingCount,
  requeue,
  startAllReady,
  startNext,
} from "../src/domain/queue.ts";
import { makeHandoff } from "./fixtures.ts";

type Q = MergeQueue<string>;

/** Enqueues handoffs in order; payload = task id. */
function given(...handoffs: ReturnType<typeof makeHandoff>[]): Q {
  let queue: Q = emptyQueue<string>();
  for (const h of handoffs) queue = enqueue(queue, h, h.taskId).queue;
  return queue;
}

/** Drains the queue serially, finishing each merge before starting the next; returns task ids in order. */
function drainOrder(queue: Q): string[] {
  const order: string[] = [];
  let current = queue;
  for (let step = startNext(current); step; step = startNext(current)) {
    order.push(step.entry.payload);
    current = finish(step.queue, step.entry.key);
  }
  return order;
}

describe("merge queue ordering", () => {
  it("given handoffs of equal priority, when drained, then FIFO", () => {
    expect(drainOrder(given(makeHandoff("a"), makeHandoff("b"), makeHandoff("c")))).toEqual(["a", "b", "c"]);
  });

  it("given mixed priorities, when drained, then priority 1 first, then FIFO within a priority", () => {
    const queue = given(
      makeHandoff("feat-1", { priority: 5 }),
      makeHandoff("fix-1", { priority: 1 }),
      makeHandoff("feat-2", { priority: 5 }),
      makeHandoff("low", { priority: 10 }),
      makeHandoff("fix-2", { priority: 1 }),
    );
    expect(drainOrder(queue)).toEqual(["fix-1", "fix-2", "feat-1", "feat-2", "low"]);
  });

  it("given an empty queue, then there is nothing next", () => {
    expect(peekNext(emptyQueue())).toBeUndefined();
    expect(startNext(emptyQueue())).toBeUndefined();
  });
});

describe("merge queue per-repo serialization", () => {
  it("given a merge in flight for a repo, when asking for the next, then entries of that repo wait", () => {
    const queue = given(makeHandoff("a", { repo: "/r1" }), makeHandoff("b", { repo: "/r1" }));
    const first = startNext(queue);
    expect(first?.entry.payload).toBe("a");
    expect(isBusy(first!.queue, "/r1")).toBe(true);
    expect(startNext(first!.queue)).toBeUndefined();

    const freed = finish(first!.queue, first!.entry.key);
    expect(isBusy(freed, "/r1")).toBe(false);
    expect(startNext(freed)?.entry.payload).toBe("b");
  });

  it("given a busy repo, then a lower-priority entry of another repo goes ahead", () => {
    const queue = given(
      makeHandoff("r1-a", { repo: "/r1", priority: 1 }),
      makeHandoff("r1-b", { repo: "/r1", priority: 1 }),
      makeHandoff("r2-a", { repo: "/r2", priority: 9 }),
    );
    const first = startNext(queue)!;
    expect(first.entry.payload).toBe("r1-a");
    expect(startNext(first.queue)?.entry.payload).toBe("r2-a");
  });

  it("given several repos, when starting all ready, then one per repo, best first", () => {
    const queue = given(
      makeHandoff("r1-a", { repo: "/r1", priority: 5 }),
      makeHandoff("r2-a", { repo: "/r2", priority: 1 }),
      makeHandoff("r1-b", { repo: "/r1/", priority: 1 }),
    );
    const { queue: after, entries } = startAllReady(queue);
    expect(entries.map((e) => e.payload)).toEqual(["r2-a", "r1-b"]);
    expect(pendingCount(after)).toBe(1);
    expect(pendingCount(after, "/r1")).toBe(1);
    expect(startNext(after)).toBeUndefined();
  });
});

describe("merge queue deduplication", () => {
  it("given a pending task, when its handoff is redelivered, then the payload is replaced in place", () => {
    let queue = given(makeHandoff("a"), makeHandoff("b"));
    const result = enqueue(queue, makeHandoff("a"), "a-redelivered");
    expect(result.status).toBe("replaced");
    queue = result.queue;
    expect(pendingCount(queue)).toBe(2);
    expect(drainOrder(queue)).toEqual(["a-redelivered", "b"]);
  });

  it("given a task in flight, when its handoff is redelivered, then the queue is unchanged", () => {
    const started = startNext(given(makeHandoff("a")))!;
    const result = enqueue(started.queue, makeHandoff("a"), "again");
    expect(result.status).toBe("in-flight");
    expect(result.queue).toBe(started.queue);
  });

  it("given the same task id in two runs, then both are queued", () => {
    const queue = given(makeHandoff("t", { runId: "run-a" }), makeHandoff("t", { runId: "run-b" }));
    expect(pendingCount(queue)).toBe(2);
  });
});

describe("merge queue requeue", () => {
  it("given an in-flight entry that hit a transient error, when requeued, then it keeps its place", () => {
    const queue = given(makeHandoff("a"), makeHandoff("b"));
    const started = startNext(queue)!;
    const back = requeue(started.queue, started.entry);
    expect(isBusy(back, "/srv/repo")).toBe(false);
    expect(drainOrder(back)).toEqual(["a", "b"]);
  });

  it("operations never mutate the previous state", () => {
    const queue = given(makeHandoff("a"));
    const snapshot = JSON.stringify(queue);
    startNext(queue);
    enqueue(queue, makeHandoff("b"), "b");
    expect(JSON.stringify(queue)).toBe(snapshot);
  });
});
