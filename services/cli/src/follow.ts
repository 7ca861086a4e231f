import type { Bus } from "@longshot/bus";
import {
  Buckets,
  type EventPayload,
  type EventType,
  LlmRunUsage,
  type RequestError,
  type RunSummary,
  Subjects,
} from "@longshot/contracts";
import { followEvents, type StoredEvent } from "./events.ts";
import { applyEvent, checkFailure, emptyRunView, type RunView } from "./run-view.ts";

/** How a followed run ended. */
export type RunOutcome =
  | { kind: "completed"; summary: RunSummary }
  | { kind: "rejected"; errors: RequestError[] };

/** Live counters shown while a run is in progress. */
export interface Progress {
  planned: number;
  running: number;
  done: number;
  merged: number;
  conflicts: number;
  /** The unsafe-local warning was printed for this run. */
  warnedUnsafe?: boolean;
}

type AnyEvent = { type: EventType; data: unknown; ts: string };

/**
 * Subscribes to `longshot.event.<runId>.>` (a plain core subscription: call it BEFORE publishing the
 * request) and reports progress lines through `print` until `run.completed` or `run.rejected`.
 */
export function followRun(bus: Bus, runId: string, print: (line: string) => void): Promise<RunOutcome> {
  const sub = bus.nc.subscribe(Subjects.runEvents(runId));
  const started = Date.now();
  const p: Progress = { planned: 0, running: 0, done: 0, merged: 0, conflicts: 0 };
  const at = () => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
  const status = () =>
    `planned ${p.planned} | running ${p.running} | done ${p.done} | merged ${p.merged} | conflicts ${p.conflicts}`;
  return (async () => {
    for await (const m of sub) {
      let e: AnyEvent;
      try {
        e = m.json<AnyEvent>();
      } catch {
        continue;
      }
      const line = describe(e, p);
      if (line)
        print(
          `${at()} ${line}${e.type.startsWith("task.") || e.type.startsWith("merge.") ? `   (${status()})` : ""}`,
        );
      if (e.type === "run.completed") {
        sub.unsubscribe();
        return { kind: "completed", summary: e.data as RunSummary };
      }
      if (e.type === "run.rejected") {
        sub.unsubscribe();
        return { kind: "rejected", errors: (e.data as EventPayload<"run.rejected">).errors };
      }
    }
    throw new Error("event subscription closed before the run ended");
  })();
}

/** The progress line of one event (undefined for events not shown), updating the live counters `p`. */
export function describe(e: AnyEvent, p: Progress): string | undefined {
  switch (e.type) {
    case "run.accepted": {
      const d = e.data as EventPayload<"run.accepted">;
      return `run ${d.runId} accepted: ${d.repo} (base ${d.baseBranch}, up to ${d.maxWorkers} workers)`;
    }
    case "planner.iteration": {
      const d = e.data as EventPayload<"planner.iteration">;
      return `planner iteration ${d.iteration}: ${d.newTasks} new task(s)${d.done ? ", planning done" : ""}`;
    }
    case "task.planned": {
      p.planned++;
      const d = e.data as EventPayload<"task.planned">;
      const kind = d.task.kind === "plan" ? "" : ` ${d.task.kind}`;
      return `planned  ${d.task.id} (p${d.task.priority}${kind}${d.task.attempt > 1 ? `, attempt ${d.task.attempt}` : ""}, ${d.task.scope.length} file(s))`;
    }
    case "task.started": {
      p.running++;
      const d = e.data as EventPayload<"task.started">;
      const line = `started  ${d.taskId}`;
      if (d.sandbox !== "unsafe-local" || p.warnedUnsafe) return line;
      p.warnedUnsafe = true;
      return `${line}\n\n  !!! WARNING: SANDBOX_PROVIDER=unsafe-local — agents of this run are NOT isolated: they can read\n  !!! this machine's files and keys, reach its network and the cluster's NATS. Use SANDBOX_PROVIDER=local.\n`;
    }
    case "task.finished": {
      p.running = Math.max(0, p.running - 1);
      p.done++;
      const d = e.data as EventPayload<"task.finished">;
      return `finished ${d.taskId}: ${d.status} in ${(d.durationMs / 1000).toFixed(1)}s`;
    }
    case "merge.merged": {
      p.merged++;
      const d = e.data as EventPayload<"merge.merged">;
      return `merged   ${d.taskId} → ${d.sha.slice(0, 8)}${d.rebased ? " (rebased)" : ""}`;
    }
    case "merge.conflict": {
      p.conflicts++;
      const d = e.data as EventPayload<"merge.conflict">;
      return `conflict ${d.taskId}: ${d.files.join(", ")}`;
    }
    case "merge.rejected": {
      const d = e.data as EventPayload<"merge.rejected">;
      return `rejected ${d.taskId} (attempt ${d.attempt}): ${d.check.name} fails on main with it (\`${d.check.command}\`, exit ${d.check.exitCode ?? "killed"}); not landed`;
    }
    case "health.verified-red": {
      const d = e.data as EventPayload<"health.verified-red">;
      return `reconciler: main red at ${d.sha.slice(0, 8)}, which the merge queue verified: ${d.cause === "flaky" ? "a flaky check (green on re-run)" : "queue defect (red again on re-run)"}`;
    }
    case "merge.skipped": {
      const d = e.data as EventPayload<"merge.skipped">;
      return `skipped  ${d.taskId}: ${d.reason}`;
    }
    case "merge.failed": {
      const d = e.data as EventPayload<"merge.failed">;
      return `merge failed ${d.taskId}: ${d.reason}`;
    }
    case "health.swept": {
      const d = e.data as EventPayload<"health.swept">;
      const failing = d.checks.filter((c) => !c.ok).map(checkFailure);
      return `sweep of ${d.sha.slice(0, 8)}: ${d.green ? "green" : `red (${failing.join(", ")})`}${d.requestId ? " [final]" : ""}`;
    }
    case "fix.requested": {
      const d = e.data as EventPayload<"fix.requested">;
      return `reconciler: ${d.summary} at ${d.sha.slice(0, 8)} → ${d.tasks.length} fix task(s) proposed`;
    }
    case "run.cancelled": {
      const d = e.data as EventPayload<"run.cancelled">;
      return `run cancelled${d.by ? ` by ${d.by}` : ""}: ${d.reason}`;
    }
    case "error.rejected":
      return `error: ${(e.data as EventPayload<"error.rejected">).reason}`;
    default:
      return undefined;
  }
}

/** The end-of-run summary block. */
export function formatSummary(runId: string, s: RunSummary): string {
  const t = s.tasks;
  return [
    "",
    `Run ${runId}: ${s.status.toUpperCase()}${s.reason ? ` — ${s.reason}` : ""}`,
    `  tasks       ${t.total} (complete ${t.complete}, partial ${t.partial}, blocked ${t.blocked}, failed ${t.failed})`,
    `  merged      ${s.merged}`,
    `  conflicts   ${s.conflicts}`,
    `  fix tasks   ${s.fixTasks} (reconciler), ${s.conflictFixTasks ?? 0} conflict-fix`,
    `  retried     ${s.retriedTasks ?? 0}`,
    `  decomposed  ${s.decomposedTasks ?? 0}`,
    `  duration    ${(s.durationMs / 1000).toFixed(1)} s`,
    `  tokens      ${s.tokens}`,
    `  repository  ${s.repo}${s.head ? ` (main at ${s.head.slice(0, 8)})` : ""}`,
  ].join("\n");
}

/**
 * The LLM gateway's usage record of a run (KV `Buckets.llmUsage`), or undefined when there is none (no gateway in
 * front of the model, or no request of the run reached it) or it does not parse.
 */
export async function readLlmUsage(bus: Bus, runId: string): Promise<LlmRunUsage | undefined> {
  try {
    const e = await (await bus.kv(Buckets.llmUsage)).get(runId);
    if (e === null || e.operation !== "PUT") return undefined;
    const p = LlmRunUsage.safeParse(JSON.parse(e.string()));
    return p.success ? p.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One summary line of a run's LLM usage as the gateway counted it: its sandboxes' calls and the services' calls
 * that named the run. Cost in the price table's currency, shown when priced.
 */
export function formatLlmUsage(u: LlmRunUsage): string {
  const n = (x: number) => Math.round(x).toLocaleString("en-US");
  const cachedPct = u.promptTokens > 0 ? Math.round((100 * u.cachedTokens) / u.promptTokens) : 0;
  const cost = u.cost > 0 ? `, cost ${u.cost.toFixed(4)}` : "";
  const split = tokensByKind(u);
  const roles = Object.entries(split.orchestrationByRole)
    .map(([role, t]) => `${role} ${n(t)}`)
    .join(", ");
  return [
    `  llm usage   ${n(u.requests)} requests, ${n(u.totalTokens)} tokens (prompt ${n(u.promptTokens)}, ${cachedPct} % cached; completion ${n(u.completionTokens)})${cost} through the gateway`,
    `              orchestration ${n(split.orchestration)} tokens${roles ? ` (${roles})` : ""}, workers ${n(split.workers)} tokens`,
  ].join("\n");
}

/** Roles whose calls orchestrate a run (the rest of a run's calls are its workers'). */
const ORCHESTRATION_ROLES = ["planner", "subplanner", "reconciler"] as const;

/**
 * A run's gateway tokens split into orchestration (planner, subplanner, reconciler: by role) and workers (role
 * `worker`: the sandboxes' calls). Tokens of any other role count as orchestration under their own name.
 */
export function tokensByKind(u: LlmRunUsage): {
  orchestration: number;
  orchestrationByRole: Record<string, number>;
  workers: number;
} {
  const orchestrationByRole: Record<string, number> = {};
  for (const role of ORCHESTRATION_ROLES)
    if (u.byRole[role]) orchestrationByRole[role] = u.byRole[role].totalTokens;
  for (const [role, t] of Object.entries(u.byRole))
    if (role !== "worker" && !(role in orchestrationByRole)) orchestrationByRole[role] = t.totalTokens;
  const orchestration = Object.values(orchestrationByRole).reduce((a, b) => a + b, 0);
  return { orchestration, orchestrationByRole, workers: u.byRole.worker?.totalTokens ?? 0 };
}

/** A run followed through its stored events ({@link followRunEvents}). */
export interface RunFollow {
  /** Resolves when the run completes or is rejected. */
  outcome: Promise<RunOutcome>;
  /** The run as its events tell so far. */
  view: RunView;
  stop(): void;
}

/**
 * Follows run `runId` through its stored events (an ordered consumer on EVENTS: a request published after this
 * resolves is not missed, and a run started earlier or elsewhere is replayed from its start). Prints a progress
 * line per event through `print`; with `quietReplay`, the events stored before following began are folded
 * silently and summed up in one line. `onChange` runs after every event with its progress line (dashboards).
 */
export async function followRunEvents(
  bus: Bus,
  runId: string,
  print: (line: string) => void,
  opts: {
    quietReplay?: boolean;
    onChange?: (v: RunView, line: string | undefined, e: StoredEvent) => void;
  } = {},
): Promise<RunFollow> {
  const view = emptyRunView(runId);
  const p: Progress = { planned: 0, running: 0, done: 0, merged: 0, conflicts: 0 };
  const started = Date.now();
  let replaying = opts.quietReplay === true;
  const at = () => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
  const status = () =>
    `planned ${p.planned} | running ${p.running} | done ${p.done} | merged ${p.merged} | conflicts ${p.conflicts}`;
  let settle: (o: RunOutcome) => void = () => {};
  const outcome = new Promise<RunOutcome>((r) => {
    settle = r;
  });
  const follow = await followEvents(
    bus,
    Subjects.runEvents(runId),
    (e: StoredEvent) => {
      applyEvent(view, e);
      const line = describe(e as AnyEvent, p);
      if (line && !replaying)
        print(
          `${at()} ${line}${e.type.startsWith("task.") || e.type.startsWith("merge.") ? `   (${status()})` : ""}`,
        );
      opts.onChange?.(view, line, e);
      if (e.type === "run.completed") {
        settle({ kind: "completed", summary: e.data as RunSummary });
        return true;
      }
      if (e.type === "run.rejected") {
        settle({ kind: "rejected", errors: (e.data as EventPayload<"run.rejected">).errors });
        return true;
      }
      return false;
    },
    () => {
      if (replaying && view.events > 0)
        print(`${at()} replayed ${view.events} earlier event(s): ${status()}`);
      replaying = false;
    },
  );
  return { outcome, view, stop: follow.stop };
}
