import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Bus, connectBus, type NatsServerHandle, startNatsServer, writeAttempt } from "@longshot/bus";
import {
  Buckets,
  emptyMetrics,
  type Handoff,
  HandoffMessage,
  type LlmRunUsage,
  Streams,
  Subjects,
  type Task,
} from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { parsePrometheusText, waitFor } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const MAIN = join(import.meta.dirname, "../src/main.ts");
const RUN = "run-mon";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A monitor process: its /metrics URL, its log, SIGKILL or SIGTERM. */
interface MonitorProcess {
  url: string;
  child: ChildProcess;
  log(): string;
}

let nats: NatsServerHandle;
let natsMonitorUrl: string;
let bus: Bus;
let dir: string;
const processes: ChildProcess[] = [];

async function startMonitorProcess(extra: Record<string, string> = {}): Promise<MonitorProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? "",
      NATS_URL: nats.url,
      METRICS_PORT: String(port),
      STUCK_AFTER_MS: "1500",
      STUCK_POLICY: "retry",
      RUN_TOKEN_BUDGET: "1000",
      NATS_MONITOR_URL: natsMonitorUrl,
      LOG_LEVEL: "info",
      ...extra,
    },
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  processes.push(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`monitor exited ${child.exitCode}: ${out}`);
    return out.includes('"streams replayed"');
  }, 20_000);
  return { url, child, log: () => out };
}

async function metrics(m: MonitorProcess): Promise<string> {
  return (await fetch(`${m.url}/metrics`)).text();
}

/** The monitor's deterministic figures (every `longshot_*` sample except those that depend on the clock). */
function totals(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of parsePrometheusText(text)) {
    if (!s.name.startsWith("longshot_") || /red_seconds|tasks_stuck/.test(s.name)) continue;
    const { service: _, ...labels } = s.labels;
    out[`${s.name}${JSON.stringify(labels)}`] = s.value;
  }
  return out;
}

const task = (id: string, attempt = 1): Task => ({
  id,
  runId: RUN,
  kind: "plan",
  description: `task ${id}`,
  scope: [],
  acceptance: "",
  branch: `worker/${id}`,
  priority: 5,
  depth: 0,
  attempt,
  repo: "/repo",
  baseBranch: "main",
});
const handoffOf = (t: Task, status: Handoff["status"], changed: boolean): Handoff => ({
  taskId: t.id,
  runId: RUN,
  status,
  summary: "done",
  filesChanged: changed ? ["src/a.ts"] : [],
  concerns: [],
  suggestions: [],
  metrics: { ...emptyMetrics(), ...(changed ? { linesAdded: 10, filesModified: 1, toolCallCount: 5 } : {}) },
  branch: t.branch,
  task: t,
});

/** Publishes one task's life as the planner, dispatcher and merger would. */
async function lifecycle(
  t: Task,
  opts: { status: Handoff["status"]; changed: boolean; merge?: "merged" | "conflict" },
) {
  const meta = { taskId: t.id };
  await bus.publishEvent(
    "task.planned",
    RUN,
    { task: t },
    { ...meta, id: `planned-${RUN}-${t.id}-${t.attempt}` },
  );
  await bus.publishEvent(
    "task.started",
    RUN,
    { taskId: t.id, attempt: t.attempt, branch: t.branch, sandbox: "local" },
    meta,
  );
  await bus.publishEvent(
    "task.progress",
    RUN,
    { taskId: t.id, attempt: t.attempt, message: "editing" },
    meta,
  );
  const h = handoffOf(t, opts.status, opts.changed);
  const now = new Date().toISOString();
  await writeAttempt(
    bus,
    {
      runId: RUN,
      taskId: t.id,
      attempt: t.attempt,
      model: "glm-5",
      harness: "pi",
      sandbox: "local",
      startedAt: now,
      finishedAt: now,
      timedOut: false,
      handoff: h,
    },
    { text: "tool bash: node --test\n", lines: 1, omittedLines: 0 },
  );
  await bus.publish(HandoffMessage, [RUN], h, {
    runId: RUN,
    ...meta,
    id: `handoff-${RUN}-${t.id}-${t.attempt}`,
  });
  await bus.publishEvent(
    "task.finished",
    RUN,
    {
      taskId: t.id,
      attempt: t.attempt,
      status: opts.status,
      summary: "done",
      durationMs: 2500,
      tokensUsed: 40,
    },
    { ...meta, id: `finished-${RUN}-${t.id}-${t.attempt}` },
  );
  if (opts.merge === "merged")
    await bus.publishEvent(
      "merge.merged",
      RUN,
      {
        taskId: t.id,
        attempt: t.attempt,
        repo: "/repo",
        baseBranch: "main",
        branch: t.branch,
        sha: "a".repeat(40),
        strategy: "rebase",
        rebased: false,
        attempts: 1,
      },
      { ...meta, id: `merge-${RUN}-${t.id}-${t.attempt}` },
    );
  if (opts.merge === "conflict")
    await bus.publishEvent(
      "merge.conflict",
      RUN,
      { taskId: t.id, attempt: t.attempt, branch: t.branch, files: ["src/a.ts"], attempts: 3 },
      { ...meta, id: `merge-${RUN}-${t.id}-${t.attempt}` },
    );
}

/** Events of `type` of the run in the EVENTS stream, read back message by message. */
async function eventsOf(type: string): Promise<{ id: string; data: Record<string, unknown> }[]> {
  const info = await bus.jsm.streams.info(Streams.EVENTS.name);
  const out: { id: string; data: Record<string, unknown> }[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await bus.jsm.streams.getMessage(Streams.EVENTS.name, { seq });
    if (m?.subject === Subjects.event(RUN, type)) out.push(m.json());
  }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "longshot-monitor-"));
  const httpPort = await freePort();
  await writeFile(join(dir, "nats.conf"), `http: "127.0.0.1:${httpPort}"\nmax_payload: 4194304\n`);
  natsMonitorUrl = `http://127.0.0.1:${httpPort}`;
  nats = await startNatsServer({ configFile: join(dir, "nats.conf") });
  bus = await connectBus({
    servers: nats.url,
    name: "monitor-test",
    log: createLogger({ service: "test", level: "silent" }),
  });
  await bus.ensureTopology();
});

afterAll(async () => {
  for (const p of processes) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  await bus?.close();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("longshot-monitor (real nats-server, real monitor processes)", () => {
  it("exports the fleet's figures, reports a stuck task, alerts on an empty diff, cancels an over-budget run, and a SIGKILLed monitor restarts to the same totals", async () => {
    await bus.publishEvent("run.accepted", RUN, {
      runId: RUN,
      prompt: "p",
      repo: "/repo",
      baseBranch: "main",
      maxWorkers: 4,
    });
    await lifecycle(task("t1"), { status: "complete", changed: true, merge: "merged" });
    await lifecycle(task("t2"), { status: "complete", changed: true, merge: "conflict" });
    await bus.publishEvent("health.swept", RUN, {
      sha: "a".repeat(40),
      green: false,
      checks: [],
      conflictFiles: [],
      durationMs: 900,
    });

    const steady = await startMonitorProcess(); // runs through the whole test
    let victim = await startMonitorProcess();

    // A task whose sandbox started and then went silent: reported stuck with the retry policy.
    const silent = task("t3");
    await bus.publishEvent(
      "task.planned",
      RUN,
      { task: silent },
      { taskId: "t3", id: `planned-${RUN}-t3-1` },
    );
    await bus.publishEvent(
      "task.started",
      RUN,
      { taskId: "t3", attempt: 1, branch: silent.branch, sandbox: "local" },
      { taskId: "t3" },
    );
    const [stuck] = await waitFor(async () => {
      const e = await eventsOf("task.stuck");
      return e.length ? e : undefined;
    }, 15_000);
    expect(stuck!.data).toMatchObject({ taskId: "t3", attempt: 1, report: 1, action: "retry" });
    expect(stuck!.data.idleMs as number).toBeGreaterThanOrEqual(1500);

    // Mid-run: the victim is killed hard while more work lands.
    victim.child.kill("SIGKILL");
    await new Promise((r) => victim.child.once("exit", r));
    // A worker that hands off complete with no change at all.
    await lifecycle(task("t4"), { status: "complete", changed: false, merge: "merged" });
    const [alert] = await waitFor(async () => {
      const e = await eventsOf("alert.raised");
      return e.length ? e : undefined;
    }, 15_000);
    expect(alert!.data).toMatchObject({ kind: "empty-diff-complete", taskId: "t4", attempt: 1 });
    // The run goes over its token budget (the gateway's usage record).
    const usage: LlmRunUsage = {
      runId: RUN,
      requests: 9,
      promptTokens: 1500,
      completionTokens: 300,
      cachedTokens: 200,
      totalTokens: 1800,
      cost: 0.0123,
      byTask: {},
      byRole: {
        planner: {
          requests: 3,
          promptTokens: 900,
          completionTokens: 100,
          cachedTokens: 0,
          totalTokens: 1000,
          cost: 0.007,
        },
        worker: {
          requests: 6,
          promptTokens: 600,
          completionTokens: 200,
          cachedTokens: 200,
          totalTokens: 800,
          cost: 0.0053,
        },
      },
      byModel: {},
    };
    await (await bus.kv(Buckets.llmUsage)).put(RUN, JSON.stringify(usage));
    const cancel = await waitFor(async () => {
      const info = await bus.jsm.streams.info(Streams.REQUESTS.name);
      if (info.state.messages === 0) return undefined;
      const m = await bus.jsm.streams.getMessage(Streams.REQUESTS.name, { last_by_subj: Subjects.cancel });
      return m?.json<Record<string, unknown>>();
    }, 15_000);
    expect(cancel).toEqual({
      runId: RUN,
      reason: "token budget exceeded: 1800 tokens used, RUN_TOKEN_BUDGET is 1000",
      by: "monitor",
    });

    victim = await startMonitorProcess();
    const [a, b] = await waitFor(async () => {
      const [x, y] = [totals(await metrics(steady)), totals(await metrics(victim))];
      return x["longshot_monitor_inputs_applied_total{}"] === y["longshot_monitor_inputs_applied_total{}"] &&
        x['longshot_tasks_planned_total{"run":"run-mon","kind":"plan"}'] === 4
        ? [x, y]
        : undefined;
    }, 15_000);
    expect(b).toEqual(a);
    expect(a['longshot_merges_total{"run":"run-mon","outcome":"merged"}']).toBe(2);
    expect(a['longshot_merges_total{"run":"run-mon","outcome":"conflict"}']).toBe(1);
    expect(a['longshot_tasks{"run":"run-mon","state":"running"}']).toBe(1);
    expect(a['longshot_tasks{"run":"run-mon","state":"merged"}']).toBe(2);
    expect(a["longshot_plan_to_merge_seconds_count{}"]).toBe(2);
    expect(a['longshot_sandbox_duration_seconds_count{"status":"complete"}']).toBe(3);
    expect(a['longshot_task_stuck_reports_total{"run":"run-mon"}']).toBeGreaterThanOrEqual(1);
    expect(a['longshot_alerts_total{"run":"run-mon","kind":"empty-diff-complete"}']).toBe(1);
    expect(a['longshot_run_main_green{"run":"run-mon"}']).toBe(0);
    expect(a['longshot_run_llm_tokens_total{"run":"run-mon","role":"planner"}']).toBe(1000);
    expect(a['longshot_run_llm_cost_dollars_total{"run":"run-mon","role":"worker"}']).toBe(0.0053);
    // The attempt history (longshot-attempts): three finished attempts, two of them with 5 tool calls.
    expect(a['longshot_attempts_total{"model":"glm-5","harness":"pi","status":"complete"}']).toBe(3);
    expect(a['longshot_attempt_tool_calls_count{"harness":"pi"}']).toBe(3);
    expect(a['longshot_attempt_tool_calls_bucket{"harness":"pi","le":"0"}']).toBe(1);
    expect(a['longshot_attempt_tool_calls_bucket{"harness":"pi","le":"4"}']).toBe(1);
    expect(a['longshot_attempt_tool_calls_bucket{"harness":"pi","le":"8"}']).toBe(3);
    // The restarted monitor repeated nothing: one alert, one cancellation, one report per stuck interval.
    expect((await eventsOf("alert.raised")).length).toBe(1);
    expect((await bus.jsm.streams.info(Streams.REQUESTS.name)).state.messages).toBe(1);
    const reports = (await eventsOf("task.stuck")).map((e) => e.data.report);
    expect(new Set(reports).size).toBe(reports.length);

    // NATS metrics in the names operators chart, from the server's /varz and /jsz.
    const text = await metrics(steady);
    const samples = parsePrometheusText(text);
    const pending = samples.find(
      (s) => s.name === "jetstream_consumer_num_pending" && s.labels.consumer_name === "merger",
    );
    expect(pending?.labels).toMatchObject({ stream_name: "HANDOFFS", service: "monitor" });
    expect(pending?.value).toBe(3); // three handoffs, no merger running
    expect(samples.some((s) => s.name === "jetstream_consumer_num_ack_pending")).toBe(true);
    expect(samples.some((s) => s.name === "jetstream_consumer_num_redelivered")).toBe(true);
    expect(samples.find((s) => s.name === "gnatsd_varz_connections")?.value).toBeGreaterThanOrEqual(3);
    expect(
      samples.find((s) => s.name === "jetstream_stream_total_messages" && s.labels.stream_name === "EVENTS")
        ?.value,
    ).toBeGreaterThan(10);
    // /healthz of a running service.
    expect((await fetch(`${victim.url}/healthz`)).status).toBe(200);
  });
});
