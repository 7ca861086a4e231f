import {
  type AcceptedRun,
  type EventPayload,
  type Handoff,
  type HandoffStatus,
  type RunSummary,
  slugify,
  type Task,
} from "@longshot/contracts";
import { z } from "zod";

/** How a task's merge ended. `skipped`: nothing to merge (failed attempt or no changes). */
export type MergeOutcome = "merged" | "conflict" | "skipped" | "failed";

/** A conversation turn of the planner's model session (kept so a restart resumes it). */
export interface Turn {
  role: "system" | "user" | "assistant";
  content: string;
}

/**
 * The planner's view of one task. `published` once it went out on TASKS; `handoff` when its attempt
 * finished; `merge` when the merge queue decided. Terminal = handoff and merge outcome both known.
 */
export interface TaskRecord {
  task: Task;
  published: boolean;
  handoff?: {
    status: HandoffStatus;
    summary: string;
    filesChanged: string[];
    concerns: string[];
    suggestions: string[];
    tokens: number;
  };
  merge?: MergeOutcome;
  mergeDetail?: string;
}

/** Result of the last reconciler sweep of the run's base branch. */
export interface SweepRecord {
  sha: string;
  green: boolean;
  summary: string;
}

/**
 * Everything the planner knows about a run; persisted in KV after every change.
 * `phase`: planning → finalizing (final sweep requested) → completed.
 */
export interface RunState {
  run: AcceptedRun;
  phase: "planning" | "finalizing" | "completed";
  startedAt: number;
  iteration: number;
  planningDone: boolean;
  conversation: Turn[];
  tasks: Record<string, TaskRecord>;
  /** Task ids in creation order. */
  order: string[];
  /** Handoffs/merge outcomes not yet reported to the model. */
  pendingReports: string[];
  handoffsSinceReplan: number;
  tokens: number;
  lastSweep?: SweepRecord;
  /** The base branch as the model last saw it (for file-tree and commit deltas). */
  lastSeen?: { head: string; files: string[] };
  finalSweepRequestId?: string;
  finalSweep?: SweepRecord;
  summary?: RunSummary;
  consecutiveErrors: number;
}

/** Planner model output: `{ scratchpad, tasks: [...] }` (root-planner.md). Fields beyond `description` optional. */
export const PlannerOutput = z.object({
  scratchpad: z.string().optional(),
  tasks: z.array(
    z.object({
      id: z.string().optional(),
      description: z.string().min(1),
      scope: z.array(z.string()).optional(),
      acceptance: z.string().optional(),
      priority: z.number().int().min(1).max(10).optional(),
    }),
  ),
});
export type PlannerOutput = z.infer<typeof PlannerOutput>;

/** A fresh run state for an accepted request. */
export function initialRunState(run: AcceptedRun, now: number): RunState {
  return {
    run,
    phase: "planning",
    startedAt: now,
    iteration: 0,
    planningDone: false,
    conversation: [],
    tasks: {},
    order: [],
    pendingReports: [],
    handoffsSinceReplan: 0,
    tokens: 0,
    consecutiveErrors: 0,
  };
}

export const isTerminal = (r: TaskRecord) => r.handoff !== undefined && r.merge !== undefined;

/** Tasks published or queued whose outcome is not known yet. */
export function activeTasks(s: RunState): TaskRecord[] {
  return s.order.map((id) => s.tasks[id]!).filter((r) => !isTerminal(r));
}

/**
 * Replan rule (inventory §1.5, kept): the first plan; then after `replanAfter` (default 3) new handoffs;
 * or when nothing is active (idle). Never while finalizing or after the model said it is done.
 */
export function needsPlan(s: RunState, replanAfter: number): boolean {
  if (s.phase !== "planning" || s.planningDone) return false;
  if (s.iteration === 0) return true;
  return s.handoffsSinceReplan >= replanAfter || activeTasks(s).length === 0;
}

/**
 * Turns model tasks into Tasks: ids slugified from the model's id (or `task-NNN`), made unique within the run
 * (a repeat of an existing id is dropped as a duplicate), branch `<prefix><id>-<slug>`, priority default 5.
 */
export function buildTasks(
  s: RunState,
  raw: PlannerOutput["tasks"],
  opts: { branchPrefix: string },
): { tasks: Task[]; dropped: string[] } {
  const tasks: Task[] = [];
  const dropped: string[] = [];
  let counter = s.order.length;
  const seen = new Set(s.order);
  for (const r of raw) {
    counter++;
    const id = r.id ? slugify(r.id, 60) : `task-${String(counter).padStart(3, "0")}`;
    if (seen.has(id)) {
      dropped.push(id);
      continue;
    }
    seen.add(id);
    tasks.push({
      id,
      runId: s.run.runId,
      kind: "plan",
      description: r.description,
      scope: (r.scope ?? []).filter((f) => f.trim().length > 0),
      acceptance: r.acceptance ?? "",
      branch: `${opts.branchPrefix}${id}-${slugify(r.description, 30)}`,
      priority: r.priority ?? 5,
      depth: 0,
      attempt: 1,
      repo: s.run.repo,
      baseBranch: s.run.baseBranch,
    });
  }
  return { tasks, dropped };
}

/** Adds planned tasks (unpublished) and records the model turn. */
export function applyPlan(s: RunState, added: Turn[], tasks: Task[], tokens: number): RunState {
  const next: RunState = {
    ...s,
    iteration: s.iteration + 1,
    conversation: [...s.conversation, ...added],
    tasks: { ...s.tasks },
    order: [...s.order],
    handoffsSinceReplan: 0,
    tokens: s.tokens + tokens,
    consecutiveErrors: 0,
  };
  for (const t of tasks) {
    next.tasks[t.id] = { task: t, published: false };
    next.order.push(t.id);
  }
  // "Done" needs both: the model has nothing to add, and nothing is still in flight (inventory §1.5).
  if (tasks.length === 0 && activeTasks(next).length === 0) next.planningDone = true;
  return next;
}

/**
 * Tasks to publish now: unpublished ones in (priority, creation) order while fewer than `maxWorkers`
 * published tasks are still without a handoff (planner-side backpressure for the run's `maxWorkers`).
 */
export function tasksToPublish(s: RunState): Task[] {
  const running = s.order.filter((id) => s.tasks[id]!.published && !s.tasks[id]!.handoff).length;
  const free = Math.max(0, s.run.maxWorkers - running);
  return s.order
    .map((id) => s.tasks[id]!)
    .filter((r) => !r.published)
    .sort((a, b) => a.task.priority - b.task.priority)
    .slice(0, free)
    .map((r) => r.task);
}

/** Records a handoff. Unknown tasks and repeats are ignored (idempotent). */
export function applyHandoff(s: RunState, h: Handoff): RunState {
  const rec = s.tasks[h.taskId];
  if (!rec || rec.handoff) return s;
  return {
    ...s,
    tasks: {
      ...s.tasks,
      [h.taskId]: {
        ...rec,
        published: true,
        handoff: {
          status: h.status,
          summary: h.summary,
          filesChanged: h.filesChanged,
          concerns: h.concerns,
          suggestions: h.suggestions,
          tokens: h.metrics.tokensUsed,
        },
      },
    },
    pendingReports: [...s.pendingReports, h.taskId],
    handoffsSinceReplan: s.handoffsSinceReplan + 1,
    tokens: s.tokens + h.metrics.tokensUsed,
  };
}

/** Records the merge queue's decision for a task. Repeats are ignored. */
export function applyMerge(s: RunState, taskId: string, outcome: MergeOutcome, detail: string): RunState {
  const rec = s.tasks[taskId];
  if (!rec || rec.merge) return s;
  return { ...s, tasks: { ...s.tasks, [taskId]: { ...rec, merge: outcome, mergeDetail: detail } } };
}

/** Records a sweep result for the run. */
export function applySweep(s: RunState, e: EventPayload<"health.swept">): RunState {
  const failing = e.checks.filter((c) => !c.ok).map((c) => c.name);
  const summary = e.green
    ? "green"
    : `red: ${[...failing, ...(e.conflictFiles.length ? [`conflict markers in ${e.conflictFiles.join(", ")}`] : [])].join(", ")}`;
  return { ...s, lastSweep: { sha: e.sha, green: e.green, summary } };
}

/** What the run should do next once planning is finished. */
export type FinalizeDecision =
  | { kind: "wait" }
  | { kind: "request-sweep" }
  | { kind: "complete"; summary: RunSummary };

/**
 * Finalization: once the model is done and every task is terminal, request a final sweep of the base branch;
 * when that sweep's result arrives, complete. Green only if every task that produced changes merged, no task
 * failed, and the final sweep is green.
 */
export function decideFinalize(
  s: RunState,
  finalSweep: SweepRecord | undefined,
  now: number,
): FinalizeDecision {
  if (!s.planningDone || activeTasks(s).length > 0) return { kind: "wait" };
  if (!s.finalSweepRequestId) return { kind: "request-sweep" };
  if (!finalSweep) return { kind: "wait" };
  return { kind: "complete", summary: summarize(s, finalSweep, now) };
}

/** The run summary (`run.completed` payload). */
export function summarize(
  s: RunState,
  sweep: SweepRecord | undefined,
  now: number,
  reason?: string,
): RunSummary {
  const recs = s.order.map((id) => s.tasks[id]!);
  const count = (st: HandoffStatus) => recs.filter((r) => r.handoff?.status === st).length;
  const merged = recs.filter((r) => r.merge === "merged").length;
  const conflicts = recs.filter((r) => r.merge === "conflict").length;
  const unmerged = recs.filter((r) => r.merge === "conflict" || r.merge === "failed").length;
  const bad = count("failed") + count("blocked");
  const green = sweep?.green === true && unmerged === 0 && bad === 0 && reason === undefined;
  const why =
    reason ??
    (green
      ? undefined
      : [
          sweep && !sweep.green ? `main is ${sweep.summary}` : undefined,
          unmerged ? `${unmerged} task(s) not merged` : undefined,
          bad ? `${bad} task(s) failed or blocked` : undefined,
        ]
          .filter(Boolean)
          .join("; "));
  return {
    status: green ? "green" : "red",
    tasks: {
      total: recs.length,
      complete: count("complete"),
      partial: count("partial"),
      blocked: count("blocked"),
      failed: count("failed"),
    },
    merged,
    conflicts,
    fixTasks: recs.filter((r) => r.task.kind === "fix").length,
    durationMs: now - s.startedAt,
    tokens: s.tokens,
    repo: s.run.repo,
    head: sweep?.sha ?? "",
    ...(why ? { reason: why } : {}),
  };
}
