import { createWriteStream, mkdirSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { hostname, userInfo } from "node:os";
import { join } from "node:path";
import { type Bus, connectBus, readAttempts } from "@longshot/bus";
import { readEnv } from "@longshot/config";
import { type CancelRequest, newId, type RunRequest, type RunSummary, Subjects } from "@longshot/contracts";
import { createLogger, type Logger } from "@longshot/log";
import { type ClusterAccess, NoClusterError, openCluster } from "./access.ts";
import {
  ClusterRunningError,
  type EmbeddedCluster,
  ensureTopologyWhenReady,
  ServiceStartError,
  startEmbeddedCluster,
} from "./cluster.ts";
import { readEvents, type StoredEvent } from "./events.ts";
import {
  describe,
  followRunEvents,
  formatLlmUsage,
  formatSummary,
  type Progress,
  readLlmUsage,
} from "./follow.ts";
import { formatHistoryTable, mergeVerdicts, printAttempts } from "./history.ts";
import { observeCluster } from "./observe.ts";
import { PreflightError, preflight } from "./preflight.ts";
import { branchHead, isGitUrl, ResetError, resetToRunStart } from "./reset.ts";
import { applyEvent, countByState, emptyRunView, formatDuration, type RunView } from "./run-view.ts";
import { defaultStateDir, readRunRecords, stateLayout, writeRunRecord } from "./state.ts";

/** Where a command writes: `out` for results, `err` for diagnostics. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/** What every command starts from: the configuration (environment over `./.env`) and the state dir. */
export interface CliContext {
  env: Record<string, string>;
  stateDir: string;
  log: Logger;
  debug: boolean;
  io: Io;
  /** Cleanups to run when the CLI is interrupted (SIGINT/SIGTERM), newest first. */
  cleanups: Array<() => Promise<void>>;
  /** `--observe`: start Prometheus beside an embedded cluster (see observe.ts). */
  observe?: boolean;
}

/**
 * The context of one CLI invocation: `./.env` of the current directory under the environment (so its settings
 * reach every service), `overrides` on top; the CLI's own log goes to `<state>/logs/cli.log` (never the terminal,
 * except with `--debug` where it goes to stderr).
 */
export function cliContext(
  io: Io,
  opts: { debug?: boolean; overrides?: Record<string, string> } = {},
): CliContext {
  const env = { ...readEnv(process.env, process.cwd()), ...opts.overrides };
  if (opts.debug) env.LOG_LEVEL = "debug";
  const stateDir = defaultStateDir(env);
  const logDir = stateLayout(stateDir).logDir;
  // The state dir holds credentials (cluster.json, server configs): only its owner may enter it.
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  mkdirSync(logDir, { recursive: true });
  const log = createLogger({
    service: "cli",
    level: opts.debug ? "debug" : "info",
    secrets: [env.NATS_PASSWORD, env.LLM_API_KEY],
    destination: opts.debug ? process.stderr : createWriteStream(join(logDir, "cli.log"), { flags: "a" }),
  });
  return { env, stateDir, log, debug: opts.debug === true, io, cleanups: [] };
}

/** Exit codes: 0 green (or done), 1 red / cancelled / failed, 2 rejected or bad input. */
const exitOf = (s: RunSummary) => (s.status === "green" ? 0 : 1);

/** Connects the CLI to an embedded cluster it started (as the cluster's admin). */
function connectTo(cluster: EmbeddedCluster, log: Logger): Promise<Bus> {
  return connectBus({
    servers: cluster.natsUrl,
    name: "longshot-cli",
    log,
    ...(cluster.client.user ? { user: cluster.client.user, pass: cluster.client.pass ?? "" } : {}),
  });
}

/** The cluster a run command works on: one this CLI started (and stops), or one that already runs. */
interface RunTarget {
  bus: Bus;
  cluster?: EmbeddedCluster;
  where: string;
  /** Resolves when the cluster goes away under this command (another CLI's cluster stopped). */
  lost?: Promise<Error>;
  close(): Promise<void>;
}

/**
 * Reaches a cluster able to run work: `NATS_URL` or the state dir's running cluster; else, after a preflight, a
 * new embedded cluster on the state dir's store (stopped by `close`). Returns an exit code instead when it
 * cannot (preflight or a service failing to start, with the reason printed).
 */
async function runTarget(ctx: CliContext, nodes?: number): Promise<RunTarget | number> {
  const { io } = ctx;
  try {
    const a = await openCluster({ env: ctx.env, stateDir: ctx.stateDir, log: ctx.log, offline: false });
    io.err(`using ${a.where}`);
    return { bus: a.bus, where: a.where, close: a.close, ...(a.lost ? { lost: a.lost } : {}) };
  } catch (e) {
    if (!(e instanceof NoClusterError)) throw e;
  }
  try {
    await preflight(ctx.env);
  } catch (e) {
    if (!(e instanceof PreflightError)) throw e;
    io.err(`longshot: ${e.message}`);
    return 2;
  }
  let cluster: EmbeddedCluster;
  try {
    cluster = await startEmbeddedCluster({
      stateDir: ctx.stateDir,
      env: ctx.env,
      notify: (l) => io.err(`cluster: ${l}`),
      ...(nodes ? { nodes } : {}),
    });
  } catch (e) {
    if (e instanceof ClusterRunningError) return runTarget(ctx, nodes);
    if (e instanceof ServiceStartError) {
      io.err(`longshot: the embedded cluster could not start: ${e.message}`);
      return 1;
    }
    throw e;
  }
  ctx.cleanups.push(() => cluster.stop());
  io.out(
    `embedded cluster: nats ${cluster.natsUrl}, services ${Object.entries(cluster.pids())
      .map(([s, p]) => `longshot-${s}(${p})`)
      .join(" ")}`,
  );
  io.out(`state: ${ctx.stateDir} (logs in ${cluster.logDir})`);
  if (ctx.observe) await observeCluster(ctx, cluster);
  const bus = await connectTo(cluster, ctx.log);
  return {
    bus,
    cluster,
    where: `the embedded cluster of ${ctx.stateDir}`,
    close: async () => {
      await bus.close();
      await cluster.stop();
    },
  };
}

/** Options of a submitted run. */
export interface SubmitOptions {
  dashboard?: (bus: Bus, runId: string) => Promise<RunDisplay>;
  reset?: boolean;
  nodes?: number;
}

/** A live display of a run (the dashboard) that replaces progress lines. */
export interface RunDisplay {
  /** The run after an event, with the event and its progress line (undefined for events not shown). */
  update(v: RunView, line: string | undefined, e: StoredEvent): void;
  close(): Promise<void>;
}

/**
 * Follows `runId` on `t` until it ends (or the cluster gives up) and prints the summary and the run's LLM usage.
 * Returns the exit code.
 */
async function followToEnd(
  ctx: CliContext,
  t: RunTarget,
  runId: string,
  opts: { quietReplay: boolean; display?: SubmitOptions["dashboard"]; publish?: () => Promise<void> },
): Promise<number> {
  const display = opts.display ? await opts.display(t.bus, runId) : undefined;
  if (display) ctx.cleanups.push(() => display.close());
  const follow = await followRunEvents(t.bus, runId, display ? () => {} : ctx.io.out, {
    quietReplay: opts.quietReplay,
    ...(display
      ? { onChange: (v: RunView, line: string | undefined, e: StoredEvent) => display.update(v, line, e) }
      : {}),
  });
  await opts.publish?.();
  const gaveUp = (t.cluster?.failed ?? t.lost)?.then((error) => ({ kind: "failed" as const, error }));
  const result = await Promise.race([follow.outcome, ...(gaveUp ? [gaveUp] : [])]);
  follow.stop();
  await display?.close();
  if (result.kind === "failed") {
    ctx.io.err(
      `longshot: ${result.error.message}; run ${runId} stays in ${ctx.stateDir}: \`longshot resume ${runId}\``,
    );
    return 1;
  }
  if (result.kind === "rejected") {
    ctx.io.err(
      `request rejected:\n${result.errors.map((e) => `  - ${e.path || "(request)"}: ${e.message}`).join("\n")}`,
    );
    return 2;
  }
  ctx.io.out(formatSummary(runId, result.summary));
  const usage = await readLlmUsage(t.bus, runId);
  if (usage) ctx.io.out(formatLlmUsage(usage));
  return exitOf(result.summary);
}

/**
 * `longshot "<request>" --repo …`: submits `req` (with a generated run id unless given) to `NATS_URL`, the state
 * dir's running cluster, or a new embedded cluster (after a preflight that fails in seconds with what to set),
 * follows it to the end and prints its summary. `--reset` first moves the base branch back to where the latest
 * recorded run of the repository started. Returns the exit code.
 */
export async function submitRun(ctx: CliContext, req: RunRequest, opts: SubmitOptions = {}): Promise<number> {
  const baseBranch = req.baseBranch ?? ctx.env.GIT_MAIN_BRANCH ?? "main";
  if (opts.reset) {
    try {
      const r = await resetToRunStart(req.repo, baseBranch, await readRunRecords(ctx.stateDir));
      ctx.io.out(
        r.keptAt
          ? `reset ${baseBranch} of ${req.repo} from ${r.from.slice(0, 8)} to ${r.to.slice(0, 8)} (where ${r.runId} started); the old tip stays at ${r.keptAt}`
          : `${baseBranch} of ${req.repo} is already where ${r.runId} started (${r.to.slice(0, 8)})`,
      );
    } catch (e) {
      if (!(e instanceof ResetError)) throw e;
      ctx.io.err(`longshot: ${e.message}`);
      return 2;
    }
  }
  const t = await runTarget(ctx, opts.nodes);
  if (typeof t === "number") return t;
  const runId = req.runId ?? newId("run");
  try {
    const startSha = isGitUrl(req.repo) ? undefined : await branchHead(req.repo, baseBranch);
    await writeRunRecord(ctx.stateDir, {
      runId,
      repo: req.repo,
      baseBranch,
      ...(startSha ? { startSha } : {}),
      submittedAt: new Date().toISOString(),
    });
    ctx.io.out(`run ${runId}`);
    return await followToEnd(ctx, t, runId, {
      quietReplay: false,
      ...(opts.dashboard ? { display: opts.dashboard } : {}),
      publish: async () => {
        await t.bus.js.publish(Subjects.request, JSON.stringify({ ...req, runId }));
      },
    });
  } finally {
    await t.close();
  }
}

/** Every stored event of `runId` folded into a view (empty view when there is none). */
async function runViewOf(bus: Bus, runId: string): Promise<{ view: RunView; events: StoredEvent[] }> {
  const events = await readEvents(bus, Subjects.runEvents(runId));
  const view = emptyRunView(runId);
  for (const e of events) applyEvent(view, e);
  return { view, events };
}

/** Opens the cluster for a reading command, printing why it cannot. */
async function reader(ctx: CliContext): Promise<ClusterAccess | number> {
  try {
    return await openCluster({ env: ctx.env, stateDir: ctx.stateDir, log: ctx.log, offline: true });
  } catch (e) {
    if (!(e instanceof NoClusterError)) throw e;
    ctx.io.err(`longshot: ${e.message}`);
    return 1;
  }
}

const ago = (ms: number | undefined, now: number) =>
  ms === undefined ? "-" : `${formatDuration(now - ms)} ago`;

/** Pads/cuts table cells. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd(),
  );
}

/**
 * `longshot runs`: every run in the store (or on `NATS_URL`), newest first: status, age, tasks, merged, tokens,
 * cost (from the gateway's usage record, when priced) and repository.
 */
export async function listRuns(ctx: CliContext): Promise<number> {
  const a = await reader(ctx);
  if (typeof a === "number") return a;
  try {
    const lifecycle = await readEvents(a.bus, Subjects.eventsOfType("run.*"));
    const views = new Map<string, RunView>();
    for (const e of lifecycle) {
      const v = views.get(e.runId) ?? emptyRunView(e.runId);
      views.set(e.runId, applyEvent(v, e));
    }
    if (views.size === 0) {
      ctx.io.out(`no runs in ${a.where}`);
      return 0;
    }
    const now = Date.now();
    const rows = [["RUN", "STATUS", "AGE", "TASKS", "MERGED", "TOKENS", "COST", "REPO"]];
    const sorted = [...views.values()].sort((x, y) => (y.acceptedAt ?? 0) - (x.acceptedAt ?? 0));
    for (const v0 of sorted) {
      const v = v0.summary ? v0 : (await runViewOf(a.bus, v0.runId)).view;
      const usage = await readLlmUsage(a.bus, v.runId);
      const tasks = v.summary ? v.summary.tasks.total : v.tasks.size;
      const merged = v.summary ? v.summary.merged : v.merged;
      const tokens = usage?.totalTokens ?? v.summary?.tokens ?? v.tokens;
      rows.push([
        v.runId,
        v.status === "unknown" ? "pending" : v.status,
        ago(v.acceptedAt ?? v.completedAt, now),
        String(tasks),
        String(merged),
        String(tokens),
        usage && usage.cost > 0 ? usage.cost.toFixed(4) : "-",
        v.repo ?? "",
      ]);
    }
    for (const line of table(rows)) ctx.io.out(line);
    if (a.kind === "offline") ctx.io.err(`(read from ${a.where})`);
    return 0;
  } finally {
    await a.close();
  }
}

/** The lines of `longshot status`: header, tasks by state, merge queue, base branch health, last events. */
export function formatStatus(v: RunView, events: StoredEvent[], now: number, lastN = 10): string[] {
  const lines: string[] = [];
  const dur = v.acceptedAt ? formatDuration((v.completedAt ?? now) - v.acceptedAt) : "-";
  lines.push(
    `run ${v.runId}: ${v.status === "unknown" ? "pending" : v.status}${v.cancelled ? ` (cancelled: ${v.cancelled.reason})` : ""}`,
  );
  if (v.repo) lines.push(`  repo        ${v.repo} (base ${v.baseBranch}, up to ${v.maxWorkers} workers)`);
  lines.push(`  started     ${ago(v.acceptedAt, now)}, ${v.completedAt ? "took" : "running for"} ${dur}`);
  const c = countByState(v);
  const states = Object.entries(c)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${s} ${n}`)
    .join(", ");
  lines.push(`  tasks       ${v.tasks.size}${states ? ` (${states})` : ""}`);
  for (const t of v.tasks.values()) {
    const since =
      t.state === "running" && t.startedAt
        ? ` for ${formatDuration(now - t.startedAt)}`
        : t.finishedAt && t.startedAt
          ? ` in ${formatDuration(t.finishedAt - t.startedAt)}`
          : "";
    lines.push(
      `    ${t.id.padEnd(24)} ${t.state}${t.handoffStatus && t.state !== "running" ? ` (${t.handoffStatus})` : ""}${since}${t.attempt > 1 ? `, attempt ${t.attempt}` : ""}`,
    );
  }
  lines.push(`  merge queue ${v.mergeQueue.length ? v.mergeQueue.join(", ") : "empty"}`);
  lines.push(
    `  ${(v.baseBranch ?? "main").padEnd(11)} ${
      v.health
        ? `${v.health.green ? "green" : `red (${v.health.failing.join(", ")})`} at ${v.health.sha.slice(0, 8)}${v.health.final ? " [final sweep]" : ""}, ${ago(v.health.at, now)}`
        : "not swept yet"
    }`,
  );
  lines.push(`  merged      ${v.merged}, conflicts ${v.conflicts}, tokens ${v.tokens}`);
  lines.push("  last events");
  const p: Progress = { planned: 0, running: 0, done: 0, merged: 0, conflicts: 0 };
  const described = events
    .map((e) => ({ e, line: describe(e as Parameters<typeof describe>[0], p) }))
    .filter((x) => x.line);
  for (const { e, line } of described.slice(-lastN))
    lines.push(`    ${e.ts.slice(11, 19)} ${line!.split("\n")[0]}`);
  return lines;
}

/** `longshot status <run>`. Exit code 1 when the run is unknown. */
export async function showStatus(ctx: CliContext, runId: string): Promise<number> {
  const a = await reader(ctx);
  if (typeof a === "number") return a;
  try {
    const { view, events } = await runViewOf(a.bus, runId);
    if (events.length === 0) {
      ctx.io.err(`longshot: no run ${runId} in ${a.where}`);
      return 1;
    }
    for (const l of formatStatus(view, events, Date.now())) ctx.io.out(l);
    if (a.kind === "offline" && view.status === "running")
      ctx.io.out(`  (no cluster is running: \`longshot resume ${runId}\` continues it)`);
    return 0;
  } finally {
    await a.close();
  }
}

/** One `logs` line of an event: time, task, type and what it says. */
export function formatLogLine(e: StoredEvent): string {
  const d = e.data as Record<string, unknown>;
  const p: Progress = { planned: 0, running: 0, done: 0, merged: 0, conflicts: 0 };
  const text =
    e.type === "task.progress"
      ? String(d.message ?? "")
      : (describe(e as Parameters<typeof describe>[0], p)?.split("\n")[0] ?? JSON.stringify(d).slice(0, 200));
  const task = taskOf(e);
  return `${e.ts} ${e.type.padEnd(17)} ${task ? `[${task}] ` : ""}${text}`;
}

/** The task an event is about (`taskId`, or the planned task's id). */
function taskOf(e: StoredEvent): string | undefined {
  const d = e.data as { taskId?: string; task?: { id?: string } };
  return e.taskId ?? d?.taskId ?? d?.task?.id;
}

/**
 * `longshot logs <run> [--task <id>] [-f]`: the run's events (every one, the worker's progress messages included),
 * or one task's followed by its attempts with their transcripts (the attempt history on NATS; for a run older than
 * it, the dispatcher's transcript files when they are on this machine); with `follow`, new ones until the run ends.
 */
export async function showLogs(
  ctx: CliContext,
  runId: string,
  opts: { task?: string; follow?: boolean },
): Promise<number> {
  const a = await reader(ctx);
  if (typeof a === "number") return a;
  const keep = (e: StoredEvent) => !opts.task || taskOf(e) === opts.task;
  try {
    if (!opts.follow) {
      const events = await readEvents(a.bus, Subjects.runEvents(runId));
      if (events.length === 0) {
        ctx.io.err(`longshot: no run ${runId} in ${a.where}`);
        return 1;
      }
      for (const e of events.filter(keep)) ctx.io.out(formatLogLine(e));
      if (opts.task) {
        // The attempt history on NATS (any machine); a run older than it has only the dispatcher's files.
        const n = await printAttempts(a.bus, runId, opts.task, events, (l) => ctx.io.out(l)).catch((err) => {
          ctx.log.warn({ err }, "attempt history not readable");
          return 0;
        });
        if (n === 0) await printTranscripts(ctx, a, runId, opts.task);
      }
      return 0;
    }
    const { followEvents } = await import("./events.ts");
    const f = await followEvents(a.bus, Subjects.runEvents(runId), (e) => {
      if (keep(e)) ctx.io.out(formatLogLine(e));
      return e.type === "run.completed" || e.type === "run.rejected";
    });
    ctx.cleanups.push(async () => f.stop());
    await f.done;
    return 0;
  } finally {
    await a.close();
  }
}

/**
 * `longshot history <run> [--task <id>]`: every attempt of the run (model, harness, status, tool calls, diff stat,
 * tokens, time, the merge queue's verdict), from the attempt history on NATS; with a task, each of its attempts in
 * full with its compact transcript. Exit code 1 when the run is unknown or has no history.
 */
export async function showHistory(ctx: CliContext, runId: string, opts: { task?: string }): Promise<number> {
  const a = await reader(ctx);
  if (typeof a === "number") return a;
  try {
    const events = await readEvents(a.bus, Subjects.runEvents(runId));
    const out = (l: string) => ctx.io.out(l);
    if (opts.task) {
      if ((await printAttempts(a.bus, runId, opts.task, events, out)) > 0) return 0;
      ctx.io.err(`longshot: no attempt of ${opts.task} in run ${runId} is stored in ${a.where}`);
      return 1;
    }
    const records = await readAttempts(a.bus, runId);
    if (records.length === 0) {
      ctx.io.err(
        events.length === 0
          ? `longshot: no run ${runId} in ${a.where}`
          : `longshot: run ${runId} has no stored attempts (none finished yet, or they aged out)`,
      );
      return 1;
    }
    for (const l of formatHistoryTable(records, mergeVerdicts(events))) out(l);
    return 0;
  } finally {
    await a.close();
  }
}

/**
 * Prints the worker transcripts of `taskId` (every attempt) the dispatcher kept under the state dir
 * (`dispatcher/transcripts/<run>/<task>.<attempt>.log`): there when the dispatcher ran on this machine (the
 * embedded cluster); elsewhere they stay on the dispatcher's host, which is said.
 */
async function printTranscripts(
  ctx: CliContext,
  a: ClusterAccess,
  runId: string,
  taskId: string,
): Promise<void> {
  const dir = join(ctx.stateDir, "dispatcher", "transcripts", runId);
  let files: string[] = [];
  try {
    files = (await readdir(dir)).filter((f) => f.startsWith(`${taskId}.`) && f.endsWith(".log")).sort();
  } catch {
    files = [];
  }
  if (files.length === 0) {
    if (a.kind === "external")
      ctx.io.out(
        `(worker transcripts stay on the dispatcher's host: LONGSHOT_STATE_DIR/dispatcher/transcripts/${runId})`,
      );
    return;
  }
  for (const f of files) {
    const attempt = f.slice(taskId.length + 1, -".log".length);
    ctx.io.out(`worker transcript of ${taskId}, attempt ${attempt} (${join(dir, f)}):`);
    for (const l of (await readFile(join(dir, f), "utf8")).trimEnd().split("\n")) ctx.io.out(`  ${l}`);
  }
}

/** Whether the store holds `runId`, and its summary when it completed. */
async function runState(bus: Bus, runId: string): Promise<{ known: boolean; summary?: RunSummary }> {
  const events = await readEvents(bus, `${Subjects.runEvents(runId).slice(0, -1)}run.*`);
  const completed = events.find((e) => e.type === "run.completed");
  return { known: events.length > 0, ...(completed ? { summary: completed.data as RunSummary } : {}) };
}

/**
 * `longshot attach <run>`: follows a run started elsewhere (another CLI, `nats pub`) on `NATS_URL` or the state
 * dir's running cluster: its earlier events summed up, then live progress, then its summary. Exit code as a run.
 */
export async function attachRun(
  ctx: CliContext,
  runId: string,
  opts: Pick<SubmitOptions, "dashboard"> = {},
): Promise<number> {
  let a: ClusterAccess;
  try {
    a = await openCluster({ env: ctx.env, stateDir: ctx.stateDir, log: ctx.log, offline: false });
  } catch (e) {
    if (!(e instanceof NoClusterError)) throw e;
    ctx.io.err(`longshot: ${e.message}; \`longshot resume ${runId}\` starts it again and continues the run`);
    return 1;
  }
  try {
    const state = await runState(a.bus, runId);
    if (state.summary) {
      ctx.io.out(formatSummary(runId, state.summary));
      return exitOf(state.summary);
    }
    ctx.io.out(`attached to run ${runId} on ${a.where}${state.known ? "" : " (no event of it yet)"}`);
    const target = { bus: a.bus, where: a.where, close: a.close, ...(a.lost ? { lost: a.lost } : {}) };
    return await followToEnd(ctx, target, runId, {
      quietReplay: true,
      ...(opts.dashboard ? { display: opts.dashboard } : {}),
    });
  } finally {
    await a.close();
  }
}

/**
 * `longshot resume <run>`: continues a run whose cluster stopped (the CLI was killed or interrupted): starts the
 * embedded cluster again on the same store (the planner resumes every unfinished run it finds) and follows the
 * run to its end; with a cluster running (or `NATS_URL`) it only attaches. A finished run prints its summary.
 */
export async function resumeRun(
  ctx: CliContext,
  runId: string,
  opts: Pick<SubmitOptions, "dashboard"> = {},
): Promise<number> {
  const peek = await reader(ctx);
  if (typeof peek === "number") return peek;
  let state: Awaited<ReturnType<typeof runState>>;
  const live = peek.kind !== "offline";
  try {
    state = await runState(peek.bus, runId);
  } finally {
    await peek.close();
  }
  if (!state.known) {
    ctx.io.err(`longshot: no run ${runId} in ${peek.where}`);
    return 1;
  }
  if (state.summary) {
    ctx.io.out(formatSummary(runId, state.summary));
    return exitOf(state.summary);
  }
  if (live) return attachRun(ctx, runId, opts);
  const t = await runTarget(ctx);
  if (typeof t === "number") return t;
  try {
    ctx.io.out(`resuming run ${runId}`);
    return await followToEnd(ctx, t, runId, {
      quietReplay: true,
      ...(opts.dashboard ? { display: opts.dashboard } : {}),
    });
  } finally {
    await t.close();
  }
}

/**
 * `longshot cancel <run>`: publishes `longshot.cancel` `{runId, reason, by}` and waits for the run's
 * `run.completed` (status `cancelled`); without a running cluster it starts the embedded one on the store so the
 * planner can stop the run. Exit 0 once the run is cancelled (or had already ended), 1 otherwise.
 */
export async function cancelRun(ctx: CliContext, runId: string, reason: string): Promise<number> {
  const peek = await reader(ctx);
  if (typeof peek === "number") return peek;
  let state: Awaited<ReturnType<typeof runState>>;
  try {
    state = await runState(peek.bus, runId);
  } finally {
    await peek.close();
  }
  if (!state.known) {
    ctx.io.err(`longshot: no run ${runId} in ${peek.where}`);
    return 1;
  }
  if (state.summary) {
    ctx.io.out(`run ${runId} already ended: ${state.summary.status}`);
    return 0;
  }
  const t = await runTarget(ctx);
  if (typeof t === "number") return t;
  try {
    const by = `longshot-cli ${safeUser()}@${hostname()}`;
    const code = await followToEnd(ctx, t, runId, {
      quietReplay: true,
      publish: async () => {
        const req: CancelRequest = { runId, reason, by };
        await t.bus.js.publish(Subjects.cancel, JSON.stringify(req));
        ctx.io.out(`cancel of ${runId} sent; waiting for the run to stop`);
      },
    });
    return code === 1 ? 0 : code;
  } finally {
    await t.close();
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}

/**
 * `longshot topology`: creates every stream, durable consumer and KV bucket on `NATS_URL` as `NATS_USER` (the
 * admin: per-role users may not), with `NATS_REPLICAS` replicas, waiting while a new cluster elects its leaders.
 * Compose's `nats-init` runs it before the services start. Exit 0 once the topology exists.
 */
export async function createTopology(ctx: CliContext): Promise<number> {
  const { env } = ctx;
  if (!env.NATS_URL) {
    ctx.io.err("longshot: topology needs NATS_URL (and NATS_USER/NATS_PASSWORD of the admin user)");
    return 2;
  }
  const replicas = Number(env.NATS_REPLICAS ?? 1) || 1;
  const bus = await connectBus({
    servers: env.NATS_URL,
    name: "longshot-topology",
    log: ctx.log,
    replicas,
    ...(env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? "" } : {}),
  });
  try {
    await ensureTopologyWhenReady(bus);
    ctx.io.out(`topology ready on ${env.NATS_URL} (${replicas} replica${replicas === 1 ? "" : "s"})`);
    return 0;
  } finally {
    await bus.close();
  }
}

/**
 * `longshot up`: runs the embedded cluster in the foreground until SIGINT/SIGTERM and prints how to reach it
 * (the `submitter` user may publish requests and cancellations and read events).
 */
export async function clusterUp(ctx: CliContext, nodes?: number): Promise<number> {
  try {
    await preflight(ctx.env);
  } catch (e) {
    if (!(e instanceof PreflightError)) throw e;
    ctx.io.err(`longshot: ${e.message}`);
    return 2;
  }
  let cluster: EmbeddedCluster;
  try {
    cluster = await startEmbeddedCluster({
      stateDir: ctx.stateDir,
      env: ctx.env,
      notify: (l) => ctx.io.err(`cluster: ${l}`),
      ...(nodes ? { nodes } : {}),
    });
  } catch (e) {
    if (e instanceof ClusterRunningError || e instanceof ServiceStartError) {
      ctx.io.err(`longshot: ${e.message}`);
      return 1;
    }
    throw e;
  }
  const { io } = ctx;
  io.out(`NATS_URL=${cluster.natsUrl}`);
  if (cluster.submitter) {
    io.out(`NATS_USER=${cluster.submitter.user}`);
    io.out(`NATS_PASSWORD=${cluster.submitter.pass}`);
  }
  io.out(
    `services: ${Object.entries(cluster.pids())
      .map(([s, p]) => `longshot-${s}(${p})`)
      .join(" ")}`,
  );
  io.out(`state: ${ctx.stateDir} (logs in ${cluster.logDir})`);
  if (ctx.observe) await observeCluster(ctx, cluster);
  io.out(
    `start a run: NATS_USER=… NATS_PASSWORD=… nats --server ${cluster.natsUrl} pub longshot.request '{"prompt":"…","repo":"/path/to/repo"}'`,
  );
  io.out("ready");
  // Runs until SIGINT/SIGTERM: the CLI's signal handler runs this cleanup and exits.
  ctx.cleanups.push(async () => {
    io.err("stopping the cluster");
    await cluster.stop();
  });
  return new Promise<number>(() => {});
}
