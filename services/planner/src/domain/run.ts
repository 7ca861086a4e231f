import type { PlanningLease } from "@longshot/bus";
import {
  type AcceptedRun,
  type EventPayload,
  type Handoff,
  type HandoffStatus,
  PlanOutput,
  type RunSummary,
  slugify,
  type Task,
} from "@longshot/contracts";

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
    /** The pushed branch head, when there is one. */
    head?: string;
  };
  /** Finalization re-submitted this task's failed merge once. */
  mergeRetried?: boolean;
  merge?: MergeOutcome;
  mergeDetail?: string;
  /** Set when the task went to the subplanner (its outcome is an aggregate of subtasks). */
  decomposed?: boolean;
  /** Conflict-fix tasks: the id of the task whose conflicting branch they resolve. */
  resolves?: string;
  /** A task that conflicted: the conflict-fix task whose merge landed its changes. */
  resolvedBy?: string;
  /** The handoff of the first attempt, kept when the task is retried. */
  previous?: { status: HandoffStatus; summary: string; concerns: string[] };
}

/**
 * The finalization loop (inventory §1.11, kept): `attempt` counts final sweeps requested; `taskCount` is the
 * number of tasks when the current one was requested (new fix tasks since then mean: sweep again once they
 * are terminal); `result` is the answer to the current request; `redSince` when it came back red.
 */
export interface FinalState {
  attempt: number;
  requestId?: string;
  taskCount: number;
  result?: SweepRecord;
  redSince?: number;
}

/** Policy knobs of the run (from configuration). */
export interface RunPolicy {
  branchPrefix: string;
  /** Model for second attempts (LLM_MODEL_FALLBACK); undefined = same model. */
  fallbackModel?: string | undefined;
  /** Conflict-fix tasks per run (default 30). */
  maxConflictFixes: number;
  /** Final sweeps per run before the run ends red (FINALIZATION_MAX_ATTEMPTS, default 3). */
  finalizationMaxAttempts: number;
  /** How long a red final sweep waits for fix tasks before the run ends red, ms. */
  finalizationTimeoutMs: number;
}

/**
 * The base branch as the model last saw it: its head, file tree, and short hashes (see `docHash` in
 * messages.ts) of FEATURES.json / DECISIONS.md, so follow-ups send only deltas.
 */
export interface SeenState {
  head: string;
  files: string[];
  docHashes?: { features?: string; decisions?: string };
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
  /**
   * The planner's conversation window: the system prompt, the first message, then the recent turns (older
   * ones are compacted into a digest; the whole transcript is in the `longshot-planner-turns` store).
   */
  conversation: Turn[];
  /** Turns written to the transcript store so far (the next turn's key suffix). */
  turnCount?: number;
  /** Planner calls whose prompt needed compaction. */
  compactions?: number;
  tasks: Record<string, TaskRecord>;
  /** Task ids in creation order. */
  order: string[];
  /** Handoffs/merge outcomes not yet reported to the model. */
  pendingReports: string[];
  handoffsSinceReplan: number;
  tokens: number;
  lastSweep?: SweepRecord;
  /** The base branch as the model last saw it (for file-tree and commit deltas). */
  lastSeen?: SeenState;
  final: FinalState;
  summary?: RunSummary;
  consecutiveErrors: number;
  /**
   * Which planner instance may call the model for this run now (several instances share a run's messages; one
   * plans at a time). Absent: nobody is planning. See `@longshot/bus` planning-lease.
   */
  planningLease?: PlanningLease;
}

/** Model output of this planner (the shared contract `PlanOutput`). */
export const PlannerOutput = PlanOutput;
export type PlannerOutput = PlanOutput;

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
    final: { attempt: 0, taskCount: 0 },
  };
}

/** Whether a task's changes are on the base branch, directly or through its conflict-fix task. */
const landed = (r: TaskRecord) => r.merge === "merged" || r.resolvedBy !== undefined;

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
  // A decomposed parent occupies no sandbox (its subtasks do, capped by the dispatcher's MAX_WORKERS).
  const running = s.order.filter((id) => {
    const r = s.tasks[id]!;
    return r.published && !r.handoff && !r.decomposed;
  }).length;
  const free = Math.max(0, s.run.maxWorkers - running);
  return s.order
    .map((id) => s.tasks[id]!)
    .filter((r) => !r.published)
    .sort((a, b) => a.task.priority - b.task.priority)
    .slice(0, free)
    .map((r) => r.task);
}

/**
 * Records a handoff (ignored when the task or attempt is unknown, or already recorded). A `failed` or
 * `blocked` first attempt is retried once instead (inventory §1.5): attempt 2 on the fallback model when
 * one is configured, with the first attempt's handoff in its context. The model is told either way.
 */
export function applyHandoff(s: RunState, h: Handoff, policy: Pick<RunPolicy, "fallbackModel">): RunState {
  const rec = s.tasks[h.taskId];
  if (!rec || rec.handoff || h.task.attempt !== rec.task.attempt) return s;
  const base = {
    ...s,
    pendingReports: [...s.pendingReports, h.taskId],
    handoffsSinceReplan: s.handoffsSinceReplan + 1,
    tokens: s.tokens + h.metrics.tokensUsed,
  };
  if ((h.status === "failed" || h.status === "blocked") && rec.task.attempt === 1) {
    const context = [
      `Attempt 1 ended ${h.status}: ${h.summary}`,
      ...(h.concerns.length ? [`Its concerns: ${h.concerns.join(" | ")}`] : []),
      "Take a different approach where the first one failed.",
    ].join("\n");
    const retry: Task = {
      ...rec.task,
      attempt: 2,
      context: rec.task.context ? `${rec.task.context}\n\n${context}` : context,
      ...(policy.fallbackModel ? { model: policy.fallbackModel } : {}),
    };
    return {
      ...base,
      tasks: {
        ...s.tasks,
        [h.taskId]: {
          task: retry,
          published: false,
          previous: { status: h.status, summary: h.summary, concerns: h.concerns },
          ...(rec.resolves ? { resolves: rec.resolves } : {}),
        },
      },
    };
  }
  return {
    ...base,
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
          ...(h.head ? { head: h.head } : {}),
        },
      },
    },
  };
}

/** A merge queue decision as the planner sees it. */
export interface MergeReport {
  taskId: string;
  attempt: number;
  /** `rejected`: the merge queue's verification failed (`merge.rejected`); see {@link applyRejection}. */
  outcome: MergeOutcome | "rejected";
  detail: string;
  /** Conflicting files (conflicts only). */
  files?: string[];
}

/** Conflict-fix tasks one original task may get in a row (a resolution that conflicts again gets another). */
export const MAX_CONFLICT_FIX_GENERATIONS = 3;

/** The task whose work a record carries to the base: itself, or for a conflict-fix task the one it resolves. */
const originOf = (r: TaskRecord) => r.resolves ?? r.task.id;

/**
 * Records the merge queue's decision for a task attempt (repeats and stale attempts are ignored).
 * A conflict files a conflict-fix task (priority 1, scope = the conflicting files, the conflicting branch
 * rebased in its sandbox), at most `maxConflictFixes` per run. A conflict-fix task whose own branch conflicts
 * again gets a successor (`<task>-cf2`, `-cf3`: its branch rebased onto the newer base, the new conflict as
 * context), up to {@link MAX_CONFLICT_FIX_GENERATIONS} per original task, so no task's work is dropped in a
 * conflict storm. A merged conflict-fix task marks the task it resolves as landed.
 */
export function applyMerge(
  s: RunState,
  m: MergeReport,
  policy: Pick<RunPolicy, "branchPrefix" | "maxConflictFixes" | "fallbackModel">,
): RunState {
  const rec = s.tasks[m.taskId];
  if (!rec || rec.merge || m.attempt !== rec.task.attempt) return s;
  if (m.outcome === "rejected") return applyRejection(s, rec, m, policy);
  const next: RunState = {
    ...s,
    tasks: { ...s.tasks, [m.taskId]: { ...rec, merge: m.outcome, mergeDetail: m.detail } },
  };
  if (m.outcome === "merged" && rec.resolves && next.tasks[rec.resolves]) {
    next.tasks[rec.resolves] = { ...next.tasks[rec.resolves]!, resolvedBy: m.taskId };
  }
  if (m.outcome !== "conflict") return next;
  const origin = originOf(rec);
  const conflictFixes = s.order.filter((id) => s.tasks[id]!.task.kind === "conflict-fix");
  const generations = conflictFixes.filter((id) => s.tasks[id]!.resolves === origin).length;
  if (conflictFixes.length >= policy.maxConflictFixes || generations >= MAX_CONFLICT_FIX_GENERATIONS)
    return next;
  const originRec = s.tasks[origin] ?? rec;
  const id = `${origin}-cf${generations === 0 ? "" : generations + 1}`.slice(0, 80);
  if (next.tasks[id]) return next;
  const files = (m.files ?? []).slice(0, 10);
  const again =
    rec.task.kind === "conflict-fix"
      ? `The previous resolution (${rec.task.id}, branch ${rec.task.branch}) conflicted again with ${s.run.baseBranch}, which moved on meanwhile; you start from that branch, so its resolution is kept. `
      : "";
  const task: Task = {
    ...originRec.task,
    id,
    kind: "conflict-fix",
    description: `${again}Resolve the merge conflict of branch ${rec.task.branch} with ${s.run.baseBranch}. The branch is being rebased onto ${s.run.baseBranch} in your sandbox and stopped with conflicts in: ${files.join(", ")}. Keep the intent of both sides. Original task: ${originRec.task.description}`,
    scope: files,
    acceptance:
      `No conflict markers remain; the rebase is complete; the project's tests pass. ${originRec.task.acceptance}`.trim(),
    branch: `${policy.branchPrefix}${id}`,
    priority: 1,
    attempt: 1,
    conflictBranch: rec.task.branch,
    resolves: origin,
  };
  delete (task as { model?: string }).model;
  delete (task as { context?: string }).context;
  return {
    ...next,
    tasks: { ...next.tasks, [id]: { task, published: false, resolves: origin } },
    order: [...next.order, id],
  };
}

/**
 * The merge queue rejected a task attempt (#12): its branch, applied on the base, fails the target's checks
 * (`m.detail`: the failing check, its command, exit code and output tail). Handled like a failed attempt:
 * attempt 1 becomes attempt 2 of the same task (on the fallback model when one is configured) with the failure
 * as context; a later attempt is recorded as a failed merge, and a fix task `<task>-vfix` (priority 1) starts
 * from the rejected branch rebased onto the base with the failure as context — its landing lands the task's
 * work (`resolves`). A fix task for the same task is filed once.
 */
function applyRejection(
  s: RunState,
  rec: TaskRecord,
  m: MergeReport,
  policy: Pick<RunPolicy, "branchPrefix" | "fallbackModel">,
): RunState {
  const failure = `The merge queue rejected attempt ${rec.task.attempt} (branch ${rec.task.branch}): ${m.detail}`;
  if (rec.task.attempt === 1) {
    const context = `${failure}\nThe change must pass the project's checks on ${s.run.baseBranch} as it is now: fix that failure while doing the task.`;
    const retry: Task = {
      ...rec.task,
      attempt: 2,
      context: rec.task.context ? `${rec.task.context}\n\n${context}` : context,
      ...(policy.fallbackModel ? { model: policy.fallbackModel } : {}),
    };
    const previous = {
      status: rec.handoff?.status ?? ("complete" as const),
      summary: rec.handoff?.summary ?? "",
      concerns: [...(rec.handoff?.concerns ?? []), `rejected by the merge queue: ${m.detail.slice(0, 300)}`],
    };
    return {
      ...s,
      tasks: {
        ...s.tasks,
        [m.taskId]: {
          task: retry,
          published: false,
          previous,
          ...(rec.resolves ? { resolves: rec.resolves } : {}),
        },
      },
    };
  }
  const next: RunState = {
    ...s,
    tasks: {
      ...s.tasks,
      [m.taskId]: { ...rec, merge: "failed", mergeDetail: `rejected by the merge queue: ${m.detail}` },
    },
  };
  const origin = originOf(rec);
  const originRec = s.tasks[origin] ?? rec;
  const id = `${origin}-vfix`.slice(0, 80);
  if (next.tasks[id]) return next;
  const task: Task = {
    ...originRec.task,
    id,
    kind: "fix",
    description: `${failure}\nYour sandbox starts from that branch rebased onto ${s.run.baseBranch}. Make the project's checks pass, keeping the intent of the task. Original task: ${originRec.task.description}`,
    acceptance:
      `The project's checks pass on ${s.run.baseBranch} with this change. ${originRec.task.acceptance}`.trim(),
    branch: `${policy.branchPrefix}${id}`,
    priority: 1,
    attempt: 1,
    conflictBranch: rec.task.branch,
    context: failure,
  };
  delete (task as { model?: string }).model;
  return {
    ...next,
    tasks: { ...next.tasks, [id]: { task, published: false, resolves: origin } },
    order: [...next.order, id],
  };
}

/**
 * Files the reconciler's fix tasks for a red base branch, unless a fix task for the same failure signature
 * is still in flight (dedup by signature, not by a model-chosen id). Ids `fix-NNN` are unique per run;
 * priority 1; at most 5 per request, ≤ 3 files each (enforced by the contract).
 */
export function applyFixRequest(
  s: RunState,
  f: EventPayload<"fix.requested">,
  policy: Pick<RunPolicy, "branchPrefix">,
): RunState {
  if (s.phase === "completed" || f.tasks.length === 0) return s;
  const inFlight = s.order.some((id) => {
    const r = s.tasks[id]!;
    return r.task.kind === "fix" && r.task.signature === f.signature && !isTerminal(r);
  });
  if (inFlight) return s;
  let n = s.order.filter((id) => s.tasks[id]!.task.kind === "fix").length;
  const tasks = { ...s.tasks };
  const order = [...s.order];
  for (const t of f.tasks) {
    let id: string;
    do id = `fix-${String(++n).padStart(3, "0")}`;
    while (tasks[id]);
    tasks[id] = {
      task: {
        id,
        runId: s.run.runId,
        kind: "fix",
        description: `${t.description}\n\nFailing check on ${s.run.baseBranch} at ${f.sha.slice(0, 8)}: ${f.summary}`,
        scope: t.scope,
        acceptance: t.acceptance,
        branch: `${policy.branchPrefix}${id}-${slugify(t.description, 30)}`,
        priority: 1,
        depth: 0,
        attempt: 1,
        repo: s.run.repo,
        baseBranch: s.run.baseBranch,
        signature: f.signature,
      },
      published: false,
    };
    order.push(id);
  }
  return { ...s, tasks, order };
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
  | { kind: "wait"; untilMs?: number }
  | { kind: "retry-merges"; taskIds: string[] }
  | { kind: "request-sweep"; requestId: string }
  | { kind: "complete"; summary: RunSummary };

/**
 * Finalization: once the model is done and every task is terminal, request a final sweep of the base
 * branch. Green (and nothing failed or left unmerged) → complete green. Red → wait for the reconciler's
 * fix tasks; when they are all terminal, sweep again; up to `finalizationMaxAttempts` sweeps, and at most
 * `finalizationTimeoutMs` waiting for fixes after a red sweep, then complete red.
 */
export function decideFinalize(
  s: RunState,
  now: number,
  policy: Pick<RunPolicy, "finalizationMaxAttempts" | "finalizationTimeoutMs">,
): FinalizeDecision {
  if (!s.planningDone || activeTasks(s).length > 0) return { kind: "wait" };
  // Every unmerged branch gets one more pass through the merge queue before the final sweep (inventory
  // §1.11), conflicts included: the base has moved since, and the rebase may go through now.
  const retry = unmergedWork(s)
    .filter((u) => !s.tasks[u.carrier]!.mergeRetried && s.tasks[u.carrier]!.handoff?.head)
    .map((u) => u.carrier);
  if (retry.length) return { kind: "retry-merges", taskIds: retry };
  const f = s.final;
  const nextRequest = () => ({
    kind: "request-sweep" as const,
    requestId: `final-${s.run.runId}-${f.attempt + 1}`,
  });
  if (!f.requestId) return nextRequest();
  if (!f.result) return { kind: "wait" };
  const sum = summarize(s, f.result, now);
  if (sum.status === "green") return { kind: "complete", summary: sum };
  if (s.order.length > f.taskCount && f.attempt < policy.finalizationMaxAttempts) return nextRequest();
  const deadline = (f.redSince ?? now) + policy.finalizationTimeoutMs;
  if (
    f.attempt >= policy.finalizationMaxAttempts ||
    now >= deadline ||
    (f.result.green && sum.status === "red")
  ) {
    return { kind: "complete", summary: sum };
  }
  return { kind: "wait", untilMs: deadline };
}

/** Records that final sweep `requestId` was requested. */
export function applyFinalRequest(s: RunState, requestId: string): RunState {
  return {
    ...s,
    phase: "finalizing",
    final: { attempt: s.final.attempt + 1, requestId, taskCount: s.order.length },
  };
}

/** Records the answer to the current final sweep request (others are ignored). */
export function applyFinalResult(s: RunState, requestId: string, sweep: SweepRecord, now: number): RunState {
  if (s.final.requestId !== requestId || s.final.result) return s;
  return { ...s, final: { ...s.final, result: sweep, ...(sweep.green ? {} : { redSince: now }) } };
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
  const unmergedList = unmergedWork(s);
  const unmerged = unmergedList.length;
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
    conflictFixTasks: recs.filter((r) => r.task.kind === "conflict-fix").length,
    retriedTasks: recs.filter((r) => r.task.attempt > 1).length,
    decomposedTasks: recs.filter((r) => r.decomposed).length,
    durationMs: now - s.startedAt,
    tokens: s.tokens,
    repo: s.run.repo,
    head: sweep?.sha ?? "",
    ...(why ? { reason: why } : {}),
    ...(unmergedList.length
      ? { unmerged: unmergedList.map((u) => ({ taskId: u.taskId, reason: u.reason })) }
      : {}),
  };
}

/**
 * The work of the run that is not on the base branch, one entry per original task: tasks whose branch
 * conflicted or failed to merge and whose work did not land through a conflict-fix task either. `carrier` is
 * the newest task holding that work (the original, or its newest conflict-fix task) — the branch to merge
 * again; `reason` says where it stands. Pure.
 */
export function unmergedWork(s: RunState): Array<{ taskId: string; carrier: string; reason: string }> {
  const groups = new Map<string, string[]>();
  for (const id of s.order) {
    const origin = originOf(s.tasks[id]!);
    groups.set(origin, [...(groups.get(origin) ?? []), id]);
  }
  const out: Array<{ taskId: string; carrier: string; reason: string }> = [];
  for (const [origin, ids] of groups) {
    const recs = ids.map((id) => s.tasks[id]!);
    if (recs.some(landed) || (s.tasks[origin] && landed(s.tasks[origin]!))) continue;
    if (!recs.some((r) => r.merge === "conflict" || r.merge === "failed")) continue;
    const newest = recs.at(-1)!;
    const decided = [...recs].reverse().find((r) => r.merge === "conflict" || r.merge === "failed")!;
    const detail = decided.mergeDetail ? `: ${decided.mergeDetail}` : "";
    const what = `${decided.merge === "conflict" ? "conflict" : "merge failed"}${detail}`;
    const where = decided.task.id === origin ? "" : ` (${decided.task.id})`;
    const reason = `${what}${where}${newest.merge === undefined ? `; ${newest.task.id} not finished` : ""}`;
    out.push({ taskId: origin, carrier: decided.task.id, reason });
  }
  return out;
}

/** Marks `taskIds` as re-submitted to the merge queue: their merge outcome is pending again. */
export function applyMergeRetry(s: RunState, taskIds: readonly string[]): RunState {
  const tasks = { ...s.tasks };
  for (const id of taskIds) {
    const r = tasks[id];
    if (!r) continue;
    const { merge: _merge, mergeDetail: _detail, ...rest } = r;
    tasks[id] = { ...rest, mergeRetried: true };
  }
  return { ...s, tasks };
}

/** The handoff to re-submit for a task whose merge failed, rebuilt from its record. */
export function handoffForRemerge(s: RunState, taskId: string): Handoff | undefined {
  const r = s.tasks[taskId];
  if (!r?.handoff?.head) return undefined;
  return {
    taskId,
    runId: s.run.runId,
    status: r.handoff.status,
    summary: r.handoff.summary,
    filesChanged: r.handoff.filesChanged,
    concerns: r.handoff.concerns,
    suggestions: r.handoff.suggestions,
    metrics: {
      linesAdded: 0,
      linesRemoved: 0,
      filesCreated: 0,
      filesModified: 0,
      tokensUsed: 0,
      toolCallCount: 0,
      durationMs: 0,
    },
    branch: r.task.branch,
    head: r.handoff.head,
    task: r.task,
  };
}
