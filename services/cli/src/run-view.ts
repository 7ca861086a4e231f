import type { EventPayload, RequestError, RunSummary } from "@longshot/contracts";
import type { StoredEvent } from "./events.ts";

/**
 * What the CLI shows of a run, folded from its events alone (the public feed `longshot.event.<run>.>`), so it
 * works for any run in the store — one started elsewhere or finished long ago. Pure: `applyEvent` only.
 */

/** Where a task stands, as its events tell. */
export type TaskState =
  | "planned"
  | "running"
  | "finished"
  | "merged"
  | "conflict"
  | "skipped"
  | "merge-failed"
  | "decomposed";

export interface TaskView {
  id: string;
  description: string;
  kind: string;
  priority: number;
  attempt: number;
  state: TaskState;
  /** The handoff status of its last finished attempt. */
  handoffStatus?: string;
  /** ms since the epoch. */
  startedAt?: number;
  finishedAt?: number;
  /** The agent's last progress message. */
  lastMessage?: string;
  toolCalls?: number;
  tokens?: number;
}

export type RunViewStatus = "unknown" | "running" | "green" | "red" | "cancelled" | "rejected";

export interface RunView {
  runId: string;
  status: RunViewStatus;
  repo?: string;
  baseBranch?: string;
  maxWorkers?: number;
  /** `run.accepted` time, ms since the epoch. */
  acceptedAt?: number;
  completedAt?: number;
  summary?: RunSummary;
  rejected?: RequestError[];
  cancelled?: { reason: string; by?: string };
  /** Tasks in planning order. */
  tasks: Map<string, TaskView>;
  /** Tasks whose handoff waits for a merge decision, in the order they finished. */
  mergeQueue: string[];
  /** The last sweep of the base branch. */
  health?: { sha: string; green: boolean; failing: string[]; final: boolean; at: number };
  merged: number;
  conflicts: number;
  /** Planner tokens plus the tokens of finished attempts. */
  tokens: number;
  /** Events folded so far. */
  events: number;
  /** Last event time, ms since the epoch. */
  lastEventAt?: number;
}

/** A view of a run no event has been seen of. */
export function emptyRunView(runId: string): RunView {
  return {
    runId,
    status: "unknown",
    tasks: new Map(),
    mergeQueue: [],
    merged: 0,
    conflicts: 0,
    tokens: 0,
    events: 0,
  };
}

const dropFromQueue = (v: RunView, taskId: string) => {
  v.mergeQueue = v.mergeQueue.filter((t) => t !== taskId);
};

/** Short reason of a failed check: "test timed out after 600 s" or the check's name. */
export function checkFailure(c: { name: string; ok: boolean; output: string }): string {
  const m = /\[timed out after (\d+) ms\]/.exec(c.output);
  return m ? `${c.name} timed out after ${Math.round(Number(m[1]) / 1000)} s` : c.name;
}

/**
 * Folds one event into `v` (mutates and returns it). Unknown types only count. A task's state follows its last
 * event: planned → running → finished (handoff, in the merge queue when it has work to merge) → merged /
 * conflict / skipped / merge-failed.
 */
export function applyEvent(v: RunView, e: StoredEvent): RunView {
  const at = Date.parse(e.ts);
  v.events++;
  if (Number.isFinite(at)) v.lastEventAt = at;
  const task = (id: string): TaskView => {
    let t = v.tasks.get(id);
    if (!t) {
      t = { id, description: "", kind: "plan", priority: 5, attempt: 1, state: "planned" };
      v.tasks.set(id, t);
    }
    return t;
  };
  switch (e.type) {
    case "run.accepted": {
      const d = e.data as EventPayload<"run.accepted">;
      if (v.status === "unknown") v.status = "running";
      v.repo = d.repo;
      v.baseBranch = d.baseBranch;
      v.maxWorkers = d.maxWorkers;
      v.acceptedAt ??= at;
      break;
    }
    case "run.rejected":
      v.status = "rejected";
      v.rejected = (e.data as EventPayload<"run.rejected">).errors;
      v.completedAt = at;
      break;
    case "run.cancelled":
      v.cancelled = e.data as EventPayload<"run.cancelled">;
      break;
    case "run.completed": {
      const d = e.data as RunSummary;
      v.summary = d;
      v.status = d.status;
      v.completedAt = at;
      v.tokens = Math.max(v.tokens, d.tokens);
      break;
    }
    case "planner.iteration":
      v.tokens += (e.data as EventPayload<"planner.iteration">).tokens;
      break;
    case "task.planned": {
      const d = (e.data as EventPayload<"task.planned">).task;
      const fresh = !v.tasks.has(d.id);
      const t = task(d.id);
      // The planner announces a task after publishing it, so its `task.started` may be stored first: only a
      // new attempt starts the task over.
      const retry = !fresh && d.attempt > t.attempt;
      Object.assign(t, {
        description: d.description,
        kind: d.kind,
        priority: d.priority,
        attempt: d.attempt,
      });
      if (retry) {
        t.state = "planned";
        delete t.startedAt;
        delete t.finishedAt;
        delete t.handoffStatus;
        dropFromQueue(v, d.id);
      }
      break;
    }
    case "task.started": {
      const t = task((e.data as EventPayload<"task.started">).taskId);
      t.state = "running";
      t.startedAt = at;
      delete t.finishedAt;
      break;
    }
    case "task.progress": {
      const d = e.data as EventPayload<"task.progress">;
      const t = task(d.taskId);
      t.lastMessage = d.message;
      if (d.toolCalls !== undefined) t.toolCalls = d.toolCalls;
      if (d.tokens !== undefined) t.tokens = d.tokens;
      break;
    }
    case "task.finished": {
      const d = e.data as EventPayload<"task.finished">;
      const t = task(d.taskId);
      t.state = "finished";
      t.handoffStatus = d.status;
      t.finishedAt = at;
      t.tokens = d.tokensUsed;
      v.tokens += d.tokensUsed;
      dropFromQueue(v, d.taskId);
      if (d.status === "complete" || d.status === "partial") v.mergeQueue.push(d.taskId);
      break;
    }
    case "merge.merged":
    case "merge.conflict":
    case "merge.skipped":
    case "merge.failed": {
      const d = e.data as { taskId: string };
      const t = task(d.taskId);
      t.state =
        e.type === "merge.merged"
          ? "merged"
          : e.type === "merge.conflict"
            ? "conflict"
            : e.type === "merge.skipped"
              ? "skipped"
              : "merge-failed";
      if (e.type === "merge.merged") v.merged++;
      if (e.type === "merge.conflict") v.conflicts++;
      dropFromQueue(v, d.taskId);
      break;
    }
    case "health.swept": {
      const d = e.data as EventPayload<"health.swept">;
      v.health = {
        sha: d.sha,
        green: d.green,
        failing: d.checks.filter((c) => !c.ok).map(checkFailure),
        final: d.requestId !== undefined,
        at,
      };
      break;
    }
    default:
      break;
  }
  return v;
}

/** Tasks counted by state. */
export function countByState(v: RunView): Record<TaskState, number> {
  const out: Record<TaskState, number> = {
    planned: 0,
    running: 0,
    finished: 0,
    merged: 0,
    conflict: 0,
    skipped: 0,
    "merge-failed": 0,
    decomposed: 0,
  };
  for (const t of v.tasks.values()) out[t.state]++;
  return out;
}

/** Rates of a run at time `now` (ms): merged commits per hour since acceptance, and merged / merge decisions. */
export function runRates(v: RunView, now: number): { commitsPerHour: number; mergeRate: number | undefined } {
  const end = v.completedAt ?? now;
  const hours = v.acceptedAt ? Math.max(1 / 3600, (end - v.acceptedAt) / 3_600_000) : 0;
  let decided = 0;
  for (const t of v.tasks.values())
    if (t.state === "merged" || t.state === "conflict" || t.state === "merge-failed") decided++;
  return {
    commitsPerHour: hours > 0 ? v.merged / hours : 0,
    mergeRate: decided > 0 ? v.merged / decided : undefined,
  };
}

/** "42 s", "3 min 5 s", "2 h 10 min". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
