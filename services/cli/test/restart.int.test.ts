import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { git, tempDir, waitFor } from "@longshot/testkit";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EmbeddedCluster, startEmbeddedCluster } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { readLlmUsage } from "../src/follow.ts";
import { adminBus, DECOMPOSED_PROMPT, makeListRepo, writeScript } from "./fixtures.ts";

const run = promisify(execFile);
type Event = { id: string; type: string; taskId?: string; data: Record<string, unknown> };

let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;
let cluster: EmbeddedCluster;
let nc: NatsConnection;
const TASKS = ["add-first", "add-last", "add-second"];

beforeAll(async () => {
  dir = await tempDir("longshot-restart-");
  const key = "sim-restart-secret-key-0123456789";
  sim = await startSimLlmProcess(await writeScript(dir.path, "cluster"), key);
  cluster = await startEmbeddedCluster({
    stateDir: join(dir.path, "state"),
    env: { LLM_BASE_URL: sim.url, LLM_API_KEY: key, LLM_MODEL: sim.model, MAX_WORKERS: "3" },
  });
  nc = await connect(cluster.client);
}, 60_000);

afterAll(async () => {
  await nc?.drain();
  await cluster?.stop();
  await sim?.stop();
  await dir?.cleanup();
});

/** Every event of a run as stored in the EVENTS stream (deduplicated by JetStream), in order. */
async function storedEvents(runId: string): Promise<Event[]> {
  const js = jetstream(nc);
  const oc = await js.consumers.get("EVENTS", {
    filter_subjects: `longshot.event.${runId}.>`,
    deliver_policy: DeliverPolicy.All,
  });
  const out: Event[] = [];
  for (;;) {
    const batch = await oc.fetch({ max_messages: 500, expires: 1000 });
    let n = 0;
    for await (const m of batch) {
      out.push(m.json<Event>());
      n++;
    }
    if (n === 0) return out;
  }
}

/**
 * Starts a run on a fresh copy of the target, SIGKILLs `service` once `trigger` (its first piece of work)
 * is seen, lets the cluster restart it, and returns the run's completion and stored events.
 */
async function runWithKill(
  service: string,
  trigger: string,
  prompt = "Add list helpers",
  isTrigger = (e: Event) => e.type === trigger,
) {
  const runId = `run-kill-${service}`;
  const repo = join(dir.path, `target-${service}`);
  await makeListRepo(repo);
  const sub = nc.subscribe(`longshot.event.${runId}.>`);
  let killed = false;
  const done = (async () => {
    for await (const m of sub) {
      const e = m.json<Event>();
      if (!killed && isTrigger(e)) {
        killed = true;
        process.kill(cluster.pids()[service]!, "SIGKILL");
      }
      if (e.type === "run.completed") return e;
    }
    throw new Error("subscription ended");
  })();
  const before = cluster.restarts()[service] ?? 0;
  nc.publish("longshot.request", JSON.stringify({ runId, prompt, repo }));
  const completed = await done;
  sub.unsubscribe();
  expect(killed).toBe(true);
  // The run may end before the CLI has seen the killed process exit (a kill right after the final sweep).
  await waitFor(() => cluster.restarts()[service] === before + 1, 10_000, 20);
  return { completed, events: await storedEvents(runId), repo };
}

/** The run is green, every task handed off and merged exactly once, each task's commit once on main. */
async function expectExactlyOnce(
  result: Awaited<ReturnType<typeof runWithKill>>,
  tasks = TASKS,
  merged = TASKS.length,
) {
  expect(result.completed.data).toMatchObject({ status: "green", merged });
  for (const type of ["task.finished", "merge.merged"]) {
    const perTask = tasks.map(
      (t) => result.events.filter((e) => e.type === type && e.data.taskId === t).length,
    );
    expect({ type, perTask }).toEqual({ type, perTask: tasks.map(() => 1) });
  }
  const subjects = (await git(result.repo, "log", "--format=%s", "main")).split("\n");
  for (const t of tasks) expect(subjects.filter((s) => s.startsWith(`${t}:`))).toHaveLength(1);
  await run(process.execPath, ["--test"], { cwd: result.repo }); // rejects if the merged main fails its tests
}

describe("a service killed with SIGKILL mid-run and restarted", () => {
  it("planner (after its first task is planned)", async () => {
    await expectExactlyOnce(await runWithKill("planner", "task.planned"));
  });

  it("subplanner (after it published its first subtask)", async () => {
    const subtasks = ["add-all-sub-1", "add-all-sub-2", "add-all-sub-3"];
    const result = await runWithKill(
      "subplanner",
      "task.planned",
      DECOMPOSED_PROMPT,
      (e) => e.type === "task.planned" && (e.data.task as { kind?: string }).kind === "subtask",
    );
    // The parent's one aggregate handoff is skipped by the merger (nothing to push); its subtasks merge.
    await expectExactlyOnce(result, subtasks, 0);
    expect(result.completed.data).toMatchObject({ decomposedTasks: 1, tasks: { total: 1, complete: 1 } });
    expect(
      result.events.filter((e) => e.type === "task.finished" && e.data.taskId === "add-all"),
    ).toHaveLength(1);
    expect(
      result.events.filter((e) => e.type === "merge.skipped" && e.data.taskId === "add-all"),
    ).toHaveLength(1);
  });

  it("dispatcher (after its first sandbox started)", async () => {
    await expectExactlyOnce(await runWithKill("dispatcher", "task.started"));
  });

  it("merger (after its first merge)", async () => {
    await expectExactlyOnce(await runWithKill("merger", "merge.merged"));
  });

  it("reconciler (after its first sweep)", async () => {
    await expectExactlyOnce(await runWithKill("reconciler", "health.swept"));
  });

  it("llm-gateway (after the first sandbox started): the tokens it issued before still work", async () => {
    // The planner's service token and the running sandboxes' task tokens were issued before the kill; the
    // restarted gateway reads them from NATS KV (without that, every later call would get 401).
    await expectExactlyOnce(await runWithKill("llm-gateway", "task.started"));
    const bus = await adminBus(cluster, "restart-usage");
    try {
      const usage = await readLlmUsage(bus, "run-kill-llm-gateway");
      expect(usage!.byRole.worker!.requests).toBeGreaterThanOrEqual(TASKS.length);
    } finally {
      await bus.close();
    }
  });
});
