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

function describe(e: AnyEvent, p: Progress): string | undefined {
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
    case "task.started":
      p.running++;
      return `started  ${(e.data as EventPayload<"task.started">).taskId}`;
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
      const failing = d.checks.filter((c) => !c.ok).map((c) => c.name);
      return `sweep of ${d.sha.slice(0, 8)}: ${d.green ? "green" : `red (${failing.join(", ")})`}${d.requestId ? " [final]" : ""}`;
    }
    case "fix.requested": {
      const d = e.data as EventPayload<"fix.requested">;
      return `reconciler: ${d.summary} at ${d.sha.slice(0, 8)} → ${d.tasks.length} fix task(s) proposed`;
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
  return `  llm usage   ${n(u.requests)} requests, ${n(u.totalTokens)} tokens (prompt ${n(u.promptTokens)}, ${cachedPct} % cached; completion ${n(u.completionTokens)})${cost} through the gateway`;
}
