import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Bus, connectBus, type HandlerContext, RetryableError } from "@longshot/bus";
import { type Envelope, envelope, type Handoff, Streams, Subjects } from "@longshot/contracts";
import { checkoutNewBranch, cloneRepo, commitAll, initRepo, pushBranch } from "@longshot/git";
import { createLogger } from "@longshot/log";
import { startTestNats, type TestNats, waitFor } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMergeQueue } from "../src/adapters/merge-queue.ts";
import { createMemoryMergedRecords } from "../src/adapters/merged-records.ts";
import { createHandoffHandler, outcomeEventId } from "../src/handlers/handoff.ts";
import { makeHandoff } from "./fixtures.ts";

// The merger's handler on a real nats-server and a real target repository: every handoff message ends with an
// outcome event its run can wait for, including a re-submission and a handoff whose retries ran out.

const log = createLogger({ service: "merger-test", level: "silent" });
const RUN = "run-outcomes";
let nats: TestNats;
let bus: Bus;
let root: string;
let target: string;

beforeAll(async () => {
  process.env.GIT_CONFIG_GLOBAL = "/dev/null";
  process.env.GIT_CONFIG_NOSYSTEM = "1";
  nats = await startTestNats();
  bus = await connectBus({ servers: nats.url, name: "merger-handoff-test", log });
  await bus.ensureTopology();
  root = await mkdtemp(join(tmpdir(), "longshot-merger-handoff-"));
  target = join(root, "target");
  await initRepo(target, { branch: "main" });
  await writeFile(join(target, "a.txt"), "a\n");
  await commitAll(target, "initial");
}, 60_000);

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

const ctx = (deliveryCount: number, lastDelivery: boolean): HandlerContext =>
  // The handler reads only the delivery facts and the logger; the raw message stays with the bus.
  ({ msg: undefined as never, log, deliveryCount, lastDelivery });

const handoffEnvelope = (h: Handoff, id: string): Envelope<Handoff> =>
  envelope("handoff", 1, h, { runId: h.runId, taskId: h.taskId, id });

type Outcome = Envelope<{ taskId: string; reason?: string; sha?: string }>;

/** The newest `type` event of the run as the EVENTS stream stored it (what the planner reads), for `taskId`. */
const outcome = (type: string, taskId: string) =>
  waitFor(
    async () => {
      const m = await bus.jsm.streams
        .getMessage(Streams.EVENTS.name, { last_by_subj: Subjects.event(RUN, type) })
        .catch(() => null);
      const e = m?.json<Outcome>();
      return e?.data.taskId === taskId ? e : undefined;
    },
    10_000,
    50,
  );

const queue = () =>
  createMergeQueue({
    stateDir: join(root, "state"),
    strategy: "rebase",
    log,
    records: createMemoryMergedRecords(),
  });

describe("merger handoff handler", () => {
  it("names the outcome event after the handoff message", () => {
    const h = makeHandoff("t1", { runId: RUN });
    expect(outcomeEventId({ id: `handoff-${RUN}-t1-1`, data: h })).toBe(`merge-${RUN}-t1-1`);
    expect(outcomeEventId({ id: `handoff-${RUN}-t1-1-remerge`, data: h })).toBe(`merge-${RUN}-t1-1-remerge`);
    expect(outcomeEventId({ id: "x-42", data: h })).toBe(`merge-${RUN}-t1-1-x-42`);
  });

  it("announces the outcome of a re-submitted handoff instead of dropping it as a duplicate", async () => {
    const handle = createHandoffHandler({ bus, queue: queue() });
    // The worker's branch is not on the target yet: the first merge fails.
    const dir = join(root, "worker");
    await cloneRepo(target, dir);
    await checkoutNewBranch(dir, "worker/late", "origin/main");
    await writeFile(join(dir, "late.txt"), "late\n");
    const head = (await commitAll(dir, "late work"))!;
    const h = makeHandoff("late", {
      runId: RUN,
      repo: target,
      branch: "worker/late",
      head,
      filesChanged: ["late.txt"],
    });
    await handle(handoffEnvelope(h, `handoff-${RUN}-late-1`), ctx(1, false));
    const failed = await outcome("merge.failed", "late");
    expect(failed.data.reason).toContain("not found on origin");
    // The planner re-submits it once the branch is there (finalization); within the duplicate window.
    await pushBranch(dir, "worker/late");
    await handle(handoffEnvelope(h, `handoff-${RUN}-late-1-remerge`), ctx(1, false));
    const merged = await outcome("merge.merged", "late");
    expect(merged.id).toBe(`merge-${RUN}-late-1-remerge`);
  }, 60_000);

  it("reports a transient failure as merge.failed on the last delivery, and retries it before", async () => {
    const handle = createHandoffHandler({ bus, queue: queue() });
    const h = makeHandoff("gone", { runId: RUN, repo: join(root, "no-such-repo") });
    const env = handoffEnvelope(h, `handoff-${RUN}-gone-1`);
    await expect(handle(env, ctx(1, false))).rejects.toBeInstanceOf(RetryableError);
    expect((await outcome("merge.failed", "late")).data.taskId).toBe("late");
    await handle(env, ctx(10, true));
    const failed = await outcome("merge.failed", "gone");
    expect(failed.id).toBe(`merge-${RUN}-gone-1-exhausted`);
    expect(failed.data.reason).toMatch(/failed transiently: .*\(gave up after 10 deliveries\)/);
  }, 60_000);
});
