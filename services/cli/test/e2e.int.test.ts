import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Task, TaskMessage } from "@longshot/contracts";
import { git, tempDir, waitFor } from "@longshot/testkit";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER_SERVICES, type EmbeddedCluster, startEmbeddedCluster } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { formatLlmUsage, readLlmUsage, tokensByKind } from "../src/follow.ts";
import { adminBus, makeListRepo, writeScript } from "./fixtures.ts";

const run = promisify(execFile);

const KEY = "sim-e2e-secret-key-0123456789";
let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;
let cluster: EmbeddedCluster;
let nc: NatsConnection;
let repo: string;
/** The first task the e2e run planned (for the redelivery case). */
let firstPlanned: Task;

beforeAll(async () => {
  dir = await tempDir("longshot-e2e-");
  repo = join(dir.path, "target");
  await makeListRepo(repo);
  const scriptPath = await writeScript(dir.path, 2);
  const key = KEY;
  sim = await startSimLlmProcess(scriptPath, key);
  cluster = await startEmbeddedCluster({
    stateDir: join(dir.path, "state"),
    env: {
      LLM_BASE_URL: sim.url,
      LLM_API_KEY: key,
      LLM_MODEL: sim.model,
      MAX_WORKERS: "2",
      LOG_LEVEL: "info",
    },
  });
  nc = await connect(cluster.client);
}, 60_000);

afterAll(async () => {
  await nc?.drain();
  await cluster?.stop();
  await sim?.stop();
  await dir?.cleanup();
});

/** Collects a run's events (plain core subscription) until `until` matches. */
async function eventsUntil(
  runId: string,
  until: string,
): Promise<{ type: string; data: Record<string, unknown> }[]> {
  const sub = nc.subscribe(`longshot.event.${runId}.>`);
  const seen: { type: string; data: Record<string, unknown> }[] = [];
  return {
    sub,
    done: (async () => {
      for await (const m of sub) {
        const e = m.json<{ type: string; data: Record<string, unknown> }>();
        seen.push(e);
        if (e.type === until) break;
      }
      return seen;
    })(),
  }.done;
}

describe("cluster end to end", () => {
  it("runs the LLM gateway in front of the model endpoint, with per-task tokens for sandboxes", async () => {
    expect(cluster.gatewayUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(cluster.pids()["llm-gateway"]).toBeGreaterThan(0);
    const dispatcherLog = await waitFor(
      async () => {
        const text = await readFile(join(cluster.logDir, "dispatcher.log"), "utf8").catch(() => "");
        return text.includes('"msg":"dispatching"') ? text : undefined;
      },
      20_000,
      100,
    );
    expect(dispatcherLog).toContain('"gatewayTokens":true');
  });

  it("lets a run's state grow past 1 MiB: the embedded nats-server takes 4 MiB messages like nats.conf", async () => {
    expect(nc.info?.max_payload).toBe(4 * 1024 * 1024);
    const bus = await adminBus(cluster, "e2e-big");
    try {
      const kv = await bus.kv("e2e-big-values");
      await kv.put("big", "x".repeat(3 * 1024 * 1024));
      expect((await kv.get("big"))!.value.length).toBe(3 * 1024 * 1024);
      await kv.destroy();
    } finally {
      await bus.close();
    }
  });

  it("runs every service as its own longshot-<service> process", async () => {
    for (const svc of CLUSTER_SERVICES) {
      const pid = cluster.pids()[svc]!;
      // The title is set once the service's modules have loaded; no event announces it, so poll ps.
      const title = await waitFor(
        async () => {
          const { stdout } = await run("ps", ["-o", "args=", "-p", String(pid)]);
          return stdout.trim().startsWith("longshot-") ? stdout.trim() : undefined;
        },
        20_000,
        100,
      );
      expect(title).toBe(`longshot-${svc}`);
    }
  });

  it("rejects an invalid request with the reasons", async () => {
    const runId = "run-invalid-1";
    const events = eventsUntil(runId, "run.rejected");
    nc.publish("longshot.request", JSON.stringify({ runId, prompt: "", repo: 42, extra: true }));
    const seen = await events;
    const rejected = seen.at(-1)!;
    expect(rejected.type).toBe("run.rejected");
    const paths = (rejected.data.errors as { path: string }[]).map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(["prompt", "repo"]));
  });

  it("rejects a request whose repository does not exist", async () => {
    const runId = "run-norepo-1";
    const events = eventsUntil(runId, "run.rejected");
    nc.publish("longshot.request", JSON.stringify({ runId, prompt: "x", repo: join(dir.path, "missing") }));
    const seen = await events;
    expect((seen.at(-1)!.data.errors as { path: string }[])[0]!.path).toBe("repo");
  });

  it("turns a plain request into merged commits on a green main, rebasing the second edit of one file", async () => {
    const runId = "run-e2e-1";
    const events = eventsUntil(runId, "run.completed");
    nc.publish(
      "longshot.request",
      JSON.stringify({ runId, prompt: "Add list helpers first() and last()", repo }),
    );
    const seen = await events;
    const types = seen.map((e) => e.type);
    expect(types[0]).toBe("run.accepted");
    const summary = seen.at(-1)!.data;
    expect(summary).toMatchObject({ status: "green", merged: 2, conflicts: 0, repo });
    const merges = seen.filter((e) => e.type === "merge.merged").map((e) => e.data);
    expect(merges.map((m) => m.taskId).sort()).toEqual(["add-first", "add-last"]);
    expect(merges.some((m) => m.rebased === true)).toBe(true);
    // Both edits are on main in the target repo, and its tests pass there.
    const list = await readFile(join(repo, "src/list.ts"), "utf8");
    expect(list).toContain("export function first");
    expect(list).toContain("export function last");
    expect(await git(repo, "rev-parse", "HEAD")).toBe(summary.head);
    const { stdout } = await run(process.execPath, ["--test"], { cwd: repo }); // rejects on a failing test
    expect(stdout).toMatch(/pass 3/);
    // Every model call went through the gateway (services and sandboxes), and the provider key is nowhere
    // in the cluster's logs.
    const metrics = await (await fetch(`${cluster.gatewayUrl}/metrics`)).text();
    const answered = [
      ...metrics.matchAll(/^llm_gateway_requests_total\{[^}]*status="200"[^}]*\} (\d+)/gm),
    ].reduce((n, m) => n + Number(m[1]), 0);
    expect(answered).toBeGreaterThanOrEqual(7); // ≥ 2 planner calls + 3 turns × 2 workers
    // The gateway accounted the sandboxes' calls to their run and task (per-task tokens); it serves nobody
    // without a token; the CLI's usage reader finds the run's record in KV.
    const bus = await adminBus(cluster, "e2e-usage");
    try {
      const usage = await waitFor(
        async () => {
          const u = await readLlmUsage(bus, runId);
          return u && Object.keys(u.byTask).length >= 2 ? u : undefined;
        },
        10_000,
        100,
      );
      expect(Object.keys(usage.byTask).sort()).toEqual(["add-first", "add-last"]);
      expect(usage.byRole.worker!.requests).toBeGreaterThanOrEqual(6);
      expect(usage.totalTokens).toBeGreaterThan(0);
      expect(formatLlmUsage(usage)).toMatch(/llm usage {3}\d+ requests, [\d,]+ tokens/);
      // Orchestration (planner, subplanner, reconciler) reported apart from the workers' tokens.
      const split = tokensByKind(usage);
      expect(split.workers).toBe(usage.byRole.worker!.totalTokens);
      expect(split.orchestrationByRole.planner).toBe(usage.byRole.planner!.totalTokens);
      expect(split.orchestration + split.workers).toBe(usage.totalTokens);
      expect(formatLlmUsage(usage)).toMatch(
        /orchestration [\d,]+ tokens \(planner [\d,]+.*\), workers [\d,]+ tokens/,
      );
      // The planner's calls name the run (x-longshot-run-id on its service token): accounted to the run too.
      expect(usage.byRole.planner!.requests).toBeGreaterThanOrEqual(2);
      expect(usage.byTask.planner).toBeUndefined();
    } finally {
      await bus.close();
    }
    // Sandbox tokens are issued with a lifetime (the worker deadline plus a margin).
    const issued = await waitFor(
      async () => {
        const text = await readFile(join(cluster.logDir, "llm-gateway.log"), "utf8").catch(() => "");
        return text
          .split("\n")
          .filter((l) => l.includes('"msg":"token issued"') && l.includes('"taskId"'))
          .map((l) => JSON.parse(l) as { expiresAt?: number })[0];
      },
      5_000,
      100,
    );
    expect(issued.expiresAt).toBeGreaterThan(Date.now() + 30 * 60_000); // WORKER_TIMEOUT 1800 s + 5 min
    const anonymous = await fetch(`${cluster.gatewayUrl}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "x", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(anonymous.status).toBe(401);
    for (const f of await readdir(cluster.logDir)) {
      expect({ f, leaked: (await readFile(join(cluster.logDir, f), "utf8")).includes(KEY) }).toEqual({
        f,
        leaked: false,
      });
    }
    // Merged exactly once each: one commit per task on main beyond the initial one.
    const log = (await git(repo, "log", "--format=%s", "main")).split("\n");
    expect(log.filter((s) => s.startsWith("add-first")).length).toBe(1);
    expect(log.filter((s) => s.startsWith("add-last")).length).toBe(1);
    firstPlanned = seen.find((e) => e.type === "task.planned")!.data.task as Task;
  });

  it("does not run an attempt again when its task message comes again (at-least-once delivery)", async () => {
    // What a redelivery after a lost ack looks like to the dispatcher: the same task, attempt and run again.
    const task = firstPlanned;
    const events: string[] = [];
    const sub = nc.subscribe(`longshot.event.${task.runId}.task.>`, {
      callback: (_e, m) => void events.push(m.json<{ type: string }>().type),
    });
    const bus = await adminBus(cluster, "e2e-redeliver");
    try {
      await bus.publish(TaskMessage, ["execute", task.runId], task, {
        runId: task.runId,
        taskId: task.id,
        id: `redelivered-${task.runId}-${task.id}-${task.attempt}`,
      });
      const line = await waitFor(
        async () =>
          (await readFile(join(cluster.logDir, "dispatcher.log"), "utf8"))
            .split("\n")
            .find((l) => l.includes("attempt already ran") && l.includes(`"taskId":"${task.id}"`)),
        30_000,
        100,
      );
      // Its handoff went out again under its id, and JetStream knew it: nothing more is published.
      expect(JSON.parse(line)).toMatchObject({
        attempt: task.attempt,
        status: "complete",
        republished: false,
      });
      await new Promise((r) => setTimeout(r, 1_000));
      // No sandbox started (no task.started), no repeated task.finished.
      expect(events).toEqual([]);
    } finally {
      sub.unsubscribe();
      await bus.close();
    }
  });
});
