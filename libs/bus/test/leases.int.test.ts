import { createLogger } from "@longshot/log";
import { startTestNats, type TestNats } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bus, connectBus, createScopeLeases, type LeaseTask } from "../src/index.ts";

// Scope leases on a real nats-server: two "dispatchers" (two connections) share them.

let nats: TestNats;
let a: Bus;
let b: Bus;
const log = createLogger({ service: "leases-test", level: "silent" });

beforeAll(async () => {
  nats = await startTestNats();
  a = await connectBus({ servers: nats.url, name: "dispatcher-a", log });
  b = await connectBus({ servers: nats.url, name: "dispatcher-b", log });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await nats?.stop();
});

const task = (id: string, scope: string[], extra: Partial<LeaseTask> = {}): LeaseTask => ({
  id,
  runId: "run-1",
  repo: "/repos/app",
  scope,
  ...extra,
});

describe("scope leases", () => {
  it("lets one task at a time hold a file, across connections, all or nothing", async () => {
    const la = createScopeLeases(a);
    const lb = createScopeLeases(b);
    expect(await la.tryAcquire(task("t1", ["src/a.ts", "src/b.ts"]))).toEqual({ ok: true });
    const blocked = await lb.tryAcquire(task("t2", ["src/c.ts", "./src/b.ts"]));
    expect(blocked.ok).toBe(false);
    expect(blocked.ok ? [] : blocked.heldBy.map((h) => [h.taskId, h.file])).toEqual([["t1", "src/b.ts"]]);
    // All or nothing: t2 gave src/c.ts back, so t3 can take it.
    expect(await lb.tryAcquire(task("t3", ["src/c.ts"]))).toEqual({ ok: true });
    // The same repository path in another run is the same file; another repository is not.
    expect((await lb.tryAcquire(task("x", ["src/a.ts"], { runId: "run-2" }))).ok).toBe(false);
    expect((await lb.tryAcquire(task("x", ["src/a.ts"], { repo: "/repos/other" }))).ok).toBe(true);
  });

  it("gives a retry its own leases back and hands a task's leases to its conflict-fix task", async () => {
    const l = createScopeLeases(a);
    expect((await l.tryAcquire(task("t4", ["lib/x.ts"]))).ok).toBe(true);
    expect((await l.tryAcquire(task("t4", ["lib/x.ts"]))).ok).toBe(true);
    expect((await l.tryAcquire(task("t4-cf", ["lib/x.ts"], { resolves: "t4" }))).ok).toBe(true);
    // A successor resolution of the same work takes it over from the first one.
    expect((await l.tryAcquire(task("t4-cf2", ["lib/x.ts"], { resolves: "t4" }))).ok).toBe(true);
    // Now the conflict-fix task holds it: the original may not release it, the conflict-fix task may.
    await l.release(task("t5", ["lib/x.ts"]));
    expect((await l.tryAcquire(task("t6", ["lib/x.ts"]))).ok).toBe(false);
    await l.release(task("t4-cf2", ["lib/x.ts"], { resolves: "t4" }));
    expect((await l.tryAcquire(task("t6", ["lib/x.ts"]))).ok).toBe(true);
  });

  it("wakes a waiting task when the holder releases, without waiting out the recheck interval", async () => {
    const la = createScopeLeases(a);
    const lb = createScopeLeases(b);
    expect((await la.tryAcquire(task("t7", ["doc.md"]))).ok).toBe(true);
    const r = await lb.tryAcquire(task("t8", ["doc.md"]));
    expect(r.ok).toBe(false);
    const started = Date.now();
    const woke = lb.waitForChange(task("t8", ["doc.md"]), r.ok ? [] : r.heldBy, 30_000);
    setTimeout(() => void la.release(task("t7", ["doc.md"])), 200);
    await woke;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await lb.tryAcquire(task("t8", ["doc.md"]))).toEqual({ ok: true });
  });
});
