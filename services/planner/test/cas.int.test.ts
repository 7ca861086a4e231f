import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Bus, connectBus, KvActor } from "@longshot/bus";
import { Buckets, emptyMetrics, type Handoff } from "@longshot/contracts";
import { createRepoReader } from "@longshot/git";
import { ChatClient } from "@longshot/llm";
import { createLogger, type Logger } from "@longshot/log";
import { makeRepo, startTestNats, type TestNats, tempDir, waitFor } from "@longshot/testkit";
import type { KV } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunState } from "../src/domain/run.ts";
import { runCodec } from "../src/domain/run-codec.ts";
import { createPlanner } from "../src/planner.ts";

const root = new URL("../../../", import.meta.url).pathname;
const log = createLogger({ service: "test", level: "silent" });
let nats: TestNats;
let bus: Bus;
let dir: Awaited<ReturnType<typeof tempDir>>;
let stopSim: () => void;
let simUrl: string;

beforeAll(async () => {
  nats = await startTestNats();
  bus = await connectBus({ servers: nats.url, name: "cas-test", log });
  await bus.ensureTopology();
  dir = await tempDir("longshot-cas-");
  const script = {
    model: "sim-cas",
    conversations: [
      {
        name: "retry",
        match: { system: "You are the root planner", user: "RETRY-RUN" },
        turns: [
          { content: JSON.stringify({ scratchpad: "", tasks: [{ id: "t1", description: "do it" }] }) },
          { content: '{"scratchpad":"","tasks":[]}' },
        ],
      },
      {
        name: "two planners",
        match: { system: "You are the root planner", user: "TWO-PLANNERS" },
        turns: [
          {
            content: JSON.stringify({ scratchpad: "", tasks: [{ id: "t1", description: "do it" }] }),
            delayMs: 1500,
          },
          { content: '{"scratchpad":"","tasks":[]}' },
        ],
      },
      {
        name: "slow",
        match: { system: "You are the root planner", user: "SLOW-RUN" },
        turns: [{ content: '{"scratchpad":"","tasks":[]}', delayMs: 2000 }],
      },
      {
        name: "planner",
        match: { system: "You are the root planner" },
        turns: [
          {
            content: JSON.stringify({
              scratchpad: "",
              tasks: [{ id: "t1", description: "do it", scope: ["a.ts"] }],
            }),
          },
          { content: '{"tasks":[]}' },
        ],
      },
    ],
  };
  await writeFile(join(dir.path, "script.json"), JSON.stringify(script));
  ({ url: simUrl, stop: stopSim } = await startSim());
}, 60_000);

/** sim-llm on the test's script (a child process); `extra` adds CLI flags such as `--api-key`. */
async function startSim(...extra: string[]): Promise<{ url: string; stop: () => void }> {
  const sim = spawn(
    process.execPath,
    [
      join(root, "services/sim-llm/src/main.ts"),
      "--script",
      join(dir.path, "script.json"),
      "--port",
      "0",
      ...extra,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const url = await new Promise<string>((resolve) => {
    sim.stdout.on("data", (d: Buffer) => {
      const m = /listening on (http\S+)/.exec(d.toString());
      if (m) resolve(m[1]!);
    });
  });
  return { url, stop: () => sim.kill("SIGTERM") };
}

/** A planner on the test's bus calling the model at `url` (with `apiKey`, when given). */
function plannerFor(
  url: string,
  apiKey?: string,
  opts: { log?: Logger; replanAfter?: number; instance?: string } = {},
) {
  return createPlanner({
    ...(opts.instance ? { instance: opts.instance } : {}),
    bus,
    log: opts.log ?? log,
    llm: new ChatClient({
      endpoints: [{ name: "sim", baseUrl: url, apiKey, weight: 1 }],
      model: "sim-cas",
      timeoutMs: 10_000,
      maxTokens: 1000,
    }),
    repo: createRepoReader(join(dir.path, "state")),
    systemPromptPath: join(root, "prompts/root-planner.md"),
    policy: {
      branchPrefix: "worker/",
      maxConflictFixes: 30,
      finalizationMaxAttempts: 3,
      finalizationTimeoutMs: 60_000,
    },
    replanAfter: opts.replanAfter ?? 3,
    maxIterations: 10,
  });
}

/** A logger that keeps the planner's log lines (pino JSON) in `lines`. */
function capturingLogger(): { log: Logger; lines: { level: number; msg: string; err?: unknown }[] } {
  const lines: { level: number; msg: string; err?: unknown }[] = [];
  return {
    lines,
    log: createLogger({
      service: "planner",
      level: "info",
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    }),
  };
}
const ERROR = 50; // pino's level number of `error`

afterAll(async () => {
  stopSim?.();
  await bus?.close();
  await nats?.stop();
  await dir?.cleanup();
});

describe("planner and a model endpoint that refuses it", () => {
  it("ends the run red at once with the HTTP status and what to check, instead of retrying", async () => {
    const repo = join(dir.path, "target-401");
    await makeRepo(repo, { "SPEC.md": "# spec\n" });
    const keyed = await startSim("--api-key", "the-right-key");
    try {
      const planner = plannerFor(keyed.url, "a-wrong-key");
      const completed = bus.nc.subscribe("longshot.event.run-401.run.completed", { max: 1 });
      const t0 = Date.now();
      await planner.start({ runId: "run-401", prompt: "x", repo, baseBranch: "main", maxWorkers: 2 });
      for await (const m of completed) {
        const summary = m.json<{ data: { status: string; reason?: string } }>().data;
        expect(summary.status).toBe("red");
        expect(summary.reason).toContain("HTTP 401");
        expect(summary.reason).toContain("LLM_API_KEY");
      }
      expect(Date.now() - t0).toBeLessThan(10_000); // no backoff ladder (10 attempts, up to 30 s apart)
      planner.stop();
    } finally {
      keyed.stop();
    }
  });
});

/** A run's state as stored (header and parts), read through the planner's codec. */
async function readRun(kv: KV, runId: string): Promise<RunState> {
  return (await KvActor.load(kv, runId, runCodec))!.state;
}

describe("planner run state in KV", () => {
  it("given another writer changed the run state, when the planner records a handoff, then it reloads and keeps both changes", async () => {
    const repo = join(dir.path, "target");
    await makeRepo(repo, { "SPEC.md": "# spec\n", "a.ts": "export {};\n" });
    const planner = plannerFor(simUrl);
    const planned = bus.nc.subscribe("longshot.event.run-cas.task.planned", { max: 1 });
    await planner.start({ runId: "run-cas", prompt: "x", repo, baseBranch: "main", maxWorkers: 2 });
    for await (const m of planned)
      expect(m.json<{ data: { task: { id: string } } }>().data.task.id).toBe("t1");

    // Another writer bumps the stored state (e.g. a second planner instance). The planner may still be
    // writing its own changes, so the external writer retries its read-modify-write.
    const kv = await bus.kv(Buckets.runs);
    // The run's header (key run-cas) holds the counters; the task records are parts (see run-codec.ts).
    let stored!: { tokens: number };
    for (let written = false; !written; ) {
      const entry = (await kv.get("run-cas"))!;
      stored = entry.json<{ tokens: number }>();
      written = await kv
        .update("run-cas", JSON.stringify({ ...stored, tokens: stored.tokens + 1_000_000 }), entry.revision)
        .then(
          () => true,
          () => false,
        );
    }

    const task = (await readRun(kv, "run-cas")).tasks.t1!.task;
    const handoff: Handoff = {
      taskId: "t1",
      runId: "run-cas",
      status: "complete",
      summary: "done",
      filesChanged: ["a.ts"],
      concerns: [],
      suggestions: [],
      metrics: { ...emptyMetrics(), tokensUsed: 5 },
      branch: task.branch,
      head: "abc",
      task,
    };
    await planner.onHandoff(handoff);
    const after = await readRun(kv, "run-cas");
    expect(after.tasks.t1!.handoff?.status).toBe("complete");
    expect(after.tokens).toBe(stored.tokens + 1_000_000 + 5);
    planner.stop();
  });
});

describe("two planner instances on one run", () => {
  it("given one instance is planning the run, when the other picks the run up, then it does not plan it too", async () => {
    const repo = join(dir.path, "target-two");
    await makeRepo(repo, { "SPEC.md": "# spec\n" });
    const a = plannerFor(simUrl, undefined, { instance: "planner:test/a" });
    const b = plannerFor(simUrl, undefined, { instance: "planner:test/b" });
    const iterations: number[] = [];
    const sub = bus.nc.subscribe("longshot.event.run-two.planner.iteration", {
      callback: (_e, m) => void iterations.push(m.json<{ data: { iteration: number } }>().data.iteration),
    });
    try {
      await a.start({ runId: "run-two", prompt: "TWO-PLANNERS", repo, baseBranch: "main", maxWorkers: 2 });
      const kv = await bus.kv(Buckets.runs);
      await waitFor(async () => (await readRun(kv, "run-two")).planningLease !== undefined, 10_000);
      expect((await readRun(kv, "run-two")).planningLease?.owner).toBe("planner:test/a");
      // b loads every unfinished run (as at its start) while a's model call (1.5 s) is in flight.
      expect(await b.resume()).toBeGreaterThanOrEqual(1);
      await waitFor(() => iterations.length >= 1, 10_000);
      await new Promise((r) => setTimeout(r, 2_500));
      // One model call, one iteration: b waited for a's lease instead of planning the run a second time.
      expect(iterations).toEqual([1]);
      const state = await readRun(kv, "run-two");
      expect(state.iteration).toBe(1);
      expect(state.order).toEqual(["t1"]);
      expect(state.planningLease).toBeUndefined();
    } finally {
      sub.unsubscribe();
      a.stop();
      b.stop();
    }
  });
});

describe("planner replanning after a failed first attempt", () => {
  it("given task t1's first attempt failed and attempt 2 is out, when the planner replans, then the plan is made and no error is logged", async () => {
    const repo = join(dir.path, "target-retry");
    await makeRepo(repo, { "SPEC.md": "# spec\n" });
    const { log: plannerLog, lines } = capturingLogger();
    const planner = plannerFor(simUrl, undefined, { log: plannerLog, replanAfter: 1 });
    const planned = bus.nc.subscribe("longshot.event.run-retry.task.planned", { max: 2 });
    const iterations = bus.nc.subscribe("longshot.event.run-retry.planner.iteration");
    await planner.start({ runId: "run-retry", prompt: "RETRY-RUN", repo, baseBranch: "main", maxWorkers: 2 });
    const attempts: number[] = [];
    let task: Handoff["task"] | undefined;
    for await (const m of planned) {
      task = m.json<{ data: { task: Handoff["task"] } }>().data.task;
      attempts.push(task.attempt);
      if (task.attempt === 1) {
        await planner.onHandoff({
          taskId: "t1",
          runId: "run-retry",
          status: "failed",
          summary: "tests would not compile",
          filesChanged: [],
          concerns: ["tsc errors"],
          suggestions: [],
          metrics: emptyMetrics(),
          branch: task.branch,
          task,
        });
      }
    }
    expect(attempts).toEqual([1, 2]);

    // The failed handoff makes a replan due (replanAfter 1) while attempt 2 has no handoff yet: the second
    // iteration must be planned, and a planning error must not be logged on the way (it ends the wait early).
    const second = (async () => {
      for await (const m of iterations)
        if (m.json<{ data: { iteration: number } }>().data.iteration === 2) return "planned";
      return "closed";
    })();
    const failed = waitFor(() => lines.some((l) => l.level >= ERROR), 60_000).then(() => "error logged");
    expect(await Promise.race([second, failed])).toBe("planned");
    iterations.unsubscribe();
    expect(lines.filter((l) => l.level >= ERROR)).toEqual([]);
    const state = await readRun(await bus.kv(Buckets.runs), "run-retry");
    expect(state.consecutiveErrors).toBe(0);
    expect(state.conversation.at(-2)?.content).toContain("### t1 — attempt 1 failed, retried as attempt 2");
    planner.stop();
  });
});

describe("planner whose planning fails beyond its own error handling", () => {
  it("given the run's state was deleted under it, when planning ends, then the failure is logged and counted instead of an unhandled rejection", async () => {
    const repo = join(dir.path, "target-slow");
    await makeRepo(repo, { "SPEC.md": "# spec\n" });
    const { log: plannerLog, lines } = capturingLogger();
    const planner = plannerFor(simUrl, undefined, { log: plannerLog });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      await planner.start({ runId: "run-slow", prompt: "SLOW-RUN", repo, baseBranch: "main", maxWorkers: 2 });
      // The model answers after 2 s; by then the state is gone, so recording the plan and recording the
      // error both fail (compare-and-set on a deleted key). Deleted once planning began (its lease is taken).
      const kv = await bus.kv(Buckets.runs);
      await waitFor(async () => (await readRun(kv, "run-slow")).planningLease !== undefined, 10_000);
      await kv.delete("run-slow");
      await waitFor(() => planner.stats().planCrashes >= 1, 30_000);
      expect(lines.filter((l) => l.msg === "planning failed outside its error handling")).toHaveLength(1);
      expect(unhandled).toEqual([]);
    } finally {
      planner.stop();
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
