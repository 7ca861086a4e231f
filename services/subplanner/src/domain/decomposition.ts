import type { PlanningLease } from "@longshot/bus";
import {
  type Handoff,
  type HandoffMetrics,
  type HandoffStatus,
  Id,
  PlanOutput,
  slugify,
  type Task,
} from "@longshot/contracts";

/** Most subtasks accepted from one model answer (a batch); extra ones are truncated (inventory §1.6). */
export const MAX_SUBTASKS_PER_BATCH = 10;
/** Most batches per decomposition: after the 5th batch is terminal the model is not asked again. */
export const MAX_ROUNDS = 5;
/** Consecutive model failures after which the subplanner stops asking (see {@link applyModelFailure}). */
export const MAX_CONSECUTIVE_ERRORS = 5;

/** How a subtask's merge ended (the `merge.<verb>` event). `skipped`: nothing to merge. */
export type MergeOutcome = "merged" | "conflict" | "skipped" | "failed";

/** A conversation turn of the decomposition's model session (kept so a restart resumes it). */
export interface Turn {
  role: "system" | "user" | "assistant";
  content: string;
}

/**
 * The subplanner's view of one subtask. `round` is the batch (1-based) that created it. It is terminal when
 * both its handoff and its merge outcome are known.
 */
export interface SubtaskRecord {
  task: Task;
  round: number;
  published: boolean;
  handoff?: {
    status: HandoffStatus;
    summary: string;
    filesChanged: string[];
    concerns: string[];
    suggestions: string[];
    metrics: HandoffMetrics;
  };
  merge?: MergeOutcome;
  mergeDetail?: string;
}

/**
 * Lifecycle of a decomposition: `active` (planning or following subtasks), `atomic` (the parent goes to a
 * worker as it is), `done` (the aggregate handoff is computed). `outPublished` records that the phase's
 * output (the atomic parent or the aggregate handoff) went out.
 */
export type DecompositionPhase = "active" | "atomic" | "done";

/**
 * Everything needed to resume a decomposition after a crash; persisted in KV `longshot-decompositions` under
 * {@link decompositionKey} after every change. Times are epoch ms.
 */
export interface DecompositionState {
  parent: Task;
  phase: DecompositionPhase;
  startedAt: number;
  /** Batches of subtasks created so far (0 before the first model answer). */
  round: number;
  /** The last `n` used in a subtask id `<parentId>-sub-<n>` (carried over to a retried parent). */
  lastIndex: number;
  conversation: Turn[];
  subtasks: Record<string, SubtaskRecord>;
  /** Subtask ids in creation order. */
  order: string[];
  /** The model returned no new subtasks (or gave up): finish once every subtask is terminal. */
  modelDone: boolean;
  /** Tokens spent by the subplanner's own model calls. */
  tokens: number;
  consecutiveErrors: number;
  /** Base-branch head the model last saw (for the commit delta of follow-ups). */
  lastHead?: string;
  atomicReason?: string;
  outPublished: boolean;
  finishedAt?: number;
  aggregate?: Handoff;
  /** Which subplanner instance may call the model for it now (see `@longshot/bus` planning-lease). */
  planningLease?: PlanningLease;
}

/** Model output of the subplanner (the shared contract `PlanOutput`; prompts/subplanner.md). */
export const SubplannerOutput = PlanOutput;
export type SubplannerOutput = PlanOutput;

/** The KV key of a decomposition: `<runId>.<parentTaskId>` (both ids are single KV tokens). */
export function decompositionKey(runId: string, parentId: string): string {
  return `${runId}.${parentId}`;
}

/** A fresh decomposition of `parent`. `lastIndex` continues the subtask numbering of an earlier attempt. */
export function initialDecomposition(parent: Task, now: number, lastIndex = 0): DecompositionState {
  return {
    parent,
    phase: "active",
    startedAt: now,
    round: 0,
    lastIndex,
    conversation: [],
    subtasks: {},
    order: [],
    modelDone: false,
    tokens: 0,
    consecutiveErrors: 0,
    outPublished: false,
  };
}

/** A decomposition that sends `parent` to a worker unchanged (its scope or depth does not warrant one). */
export function atomicDecomposition(
  parent: Task,
  now: number,
  reason: string,
  lastIndex = 0,
): DecompositionState {
  return { ...initialDecomposition(parent, now, lastIndex), phase: "atomic", atomicReason: reason };
}

/** What to do with a parent task delivered while `existing` (if any) is stored under its key. */
export type ParentDecision = "start" | "restart" | "ignore";

/**
 * Idempotency of parent deliveries: no stored decomposition → `start`; a later attempt of a parent whose
 * decomposition is finished (done or sent to a worker) → `restart` (a fresh decomposition, numbering
 * continued); anything else (a redelivery, or an older/concurrent attempt) → `ignore`.
 */
export function decideParent(existing: DecompositionState | undefined, parent: Task): ParentDecision {
  if (!existing) return "start";
  if (parent.attempt <= existing.parent.attempt) return "ignore";
  return existing.phase === "active" ? "ignore" : "restart";
}

const normalizePath = (p: string) => p.trim().replace(/^(\.\/)+/, "");

/**
 * The id of subtask `n` of `parentId`: `<parentId>-sub-<n>`. When that would exceed the 80-character id limit
 * (deep recursion of long ids), the parent part is shortened and made unique with a hash of the full parent id.
 */
export function subtaskId(parentId: string, n: number): string {
  const suffix = `-sub-${n}`;
  const plain = `${parentId}${suffix}`;
  if (Id.safeParse(plain).success) return plain;
  const hash = fnv1a(parentId);
  return `${parentId.slice(0, 80 - suffix.length - hash.length - 1)}-${hash}${suffix}`;
}

/** 32-bit FNV-1a of `s` as 8 hex digits (stable short hash; not for security). */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** A model subtask that was not turned into a Task, and why. */
export interface DroppedSubtask {
  index: number;
  description: string;
  reason: string;
}

/**
 * Turns one model answer into subtasks of `parent`:
 * - each scope is filtered to files of the parent's scope (paths trimmed, `./` stripped, duplicates removed);
 * - files already claimed by an earlier subtask of the same batch are removed (no overlap between siblings);
 * - a subtask left with no file is dropped; at most `maxSubtasks` (default 10) are kept, the rest truncated;
 * - ids `<parentId>-sub-<n>` with `n` counting on from `lastIndex` (model ids are ignored), `kind: "subtask"`,
 *   `parentId`, `depth` + 1, attempt 1, priority default = the parent's, branch `<prefix><id>-<slug>`,
 *   repo/baseBranch/runId/model of the parent.
 */
export function buildSubtasks(
  parent: Task,
  raw: SubplannerOutput["tasks"],
  opts: { branchPrefix: string; lastIndex: number; maxSubtasks?: number },
): { tasks: Task[]; dropped: DroppedSubtask[] } {
  const max = opts.maxSubtasks ?? MAX_SUBTASKS_PER_BATCH;
  const allowed = new Set(parent.scope.map(normalizePath));
  const claimed = new Set<string>();
  const tasks: Task[] = [];
  const dropped: DroppedSubtask[] = [];
  let n = opts.lastIndex;
  for (const [index, r] of raw.entries()) {
    const drop = (reason: string) => dropped.push({ index, description: r.description, reason });
    if (tasks.length >= max) {
      drop(`more than ${max} subtasks in one batch`);
      continue;
    }
    const scope: string[] = [];
    for (const f of (r.scope ?? []).map(normalizePath)) {
      if (allowed.has(f) && !claimed.has(f) && !scope.includes(f)) scope.push(f);
    }
    if (scope.length === 0) {
      drop("no file of the parent's scope left (outside it or claimed by a sibling)");
      continue;
    }
    for (const f of scope) claimed.add(f);
    n++;
    const id = subtaskId(parent.id, n);
    tasks.push({
      id,
      runId: parent.runId,
      parentId: parent.id,
      kind: "subtask",
      description: r.description,
      scope,
      acceptance: r.acceptance ?? "",
      branch: `${opts.branchPrefix}${id}-${slugify(r.description, 30)}`,
      priority: r.priority ?? parent.priority,
      depth: parent.depth + 1,
      attempt: 1,
      repo: parent.repo,
      baseBranch: parent.baseBranch,
      ...(parent.model !== undefined ? { model: parent.model } : {}),
    });
  }
  return { tasks, dropped };
}

/**
 * Records a model answer: appends the turns, counts its tokens, adds `tasks` as round `round + 1`
 * (unpublished). No tasks on the first round → `atomic`; no tasks later → `modelDone`.
 */
export function applyBatch(
  s: DecompositionState,
  turns: Turn[],
  tasks: Task[],
  tokens: number,
  head?: string,
): DecompositionState {
  const next: DecompositionState = {
    ...s,
    conversation: [...s.conversation, ...turns],
    tokens: s.tokens + tokens,
    consecutiveErrors: 0,
    ...(head !== undefined ? { lastHead: head } : {}),
  };
  if (tasks.length === 0) {
    return s.round === 0
      ? { ...next, phase: "atomic", atomicReason: "the model returned no subtasks" }
      : { ...next, modelDone: true };
  }
  const round = s.round + 1;
  next.round = round;
  next.subtasks = { ...s.subtasks };
  next.order = [...s.order];
  for (const t of tasks) {
    next.subtasks[t.id] = { task: t, round, published: false };
    next.order.push(t.id);
  }
  next.lastIndex = Math.max(s.lastIndex, ...tasks.map((t) => indexOf(t.id)));
  return next;
}

const indexOf = (id: string) => Number(/-sub-(\d+)$/.exec(id)?.[1] ?? 0);

/**
 * Records a failed model call. After `maxErrors` in a row the subplanner gives up asking: before any batch the
 * parent goes to a worker as it is (`atomic`), later the decomposition finishes with what it has.
 */
export function applyModelFailure(
  s: DecompositionState,
  reason: string,
  maxErrors = MAX_CONSECUTIVE_ERRORS,
): DecompositionState {
  const n = s.consecutiveErrors + 1;
  const next = { ...s, consecutiveErrors: n };
  if (n < maxErrors) return next;
  return s.round === 0
    ? { ...next, phase: "atomic", atomicReason: `the model failed ${n} times in a row: ${reason}` }
    : { ...next, modelDone: true };
}

/** Marks subtask `id` as published. */
export function markPublished(s: DecompositionState, id: string): DecompositionState {
  const rec = s.subtasks[id];
  if (!rec || rec.published) return s;
  return { ...s, subtasks: { ...s.subtasks, [id]: { ...rec, published: true } } };
}

/**
 * Records a subtask's handoff. Handoffs of unknown subtasks, of another attempt, repeats and handoffs after the
 * decomposition finished are ignored (returns `s` itself).
 */
export function applyHandoff(s: DecompositionState, h: Handoff): DecompositionState {
  const rec = s.subtasks[h.taskId];
  if (s.phase !== "active" || !rec || rec.handoff || h.task.attempt !== rec.task.attempt) return s;
  return {
    ...s,
    subtasks: {
      ...s.subtasks,
      [h.taskId]: {
        ...rec,
        published: true,
        handoff: {
          status: h.status,
          summary: h.summary,
          filesChanged: h.filesChanged,
          concerns: h.concerns,
          suggestions: h.suggestions,
          metrics: h.metrics,
        },
      },
    },
  };
}

/**
 * Records the merge queue's decision for a subtask (`attempt` of the merged handoff). Unknown subtasks, other
 * attempts, repeats and late events are ignored (returns `s` itself). A merge may arrive before the handoff.
 */
export function applyMerge(
  s: DecompositionState,
  taskId: string,
  attempt: number,
  outcome: MergeOutcome,
  detail: string,
): DecompositionState {
  const rec = s.subtasks[taskId];
  if (s.phase !== "active" || !rec || rec.merge || attempt !== rec.task.attempt) return s;
  return {
    ...s,
    subtasks: { ...s.subtasks, [taskId]: { ...rec, published: true, merge: outcome, mergeDetail: detail } },
  };
}

/** A subtask is terminal when both its handoff and its merge outcome are known. */
export const isTerminal = (r: SubtaskRecord): boolean => r.handoff !== undefined && r.merge !== undefined;

/** True when the decomposition has subtasks and every one is terminal. */
export function allTerminal(s: DecompositionState): boolean {
  return s.order.length > 0 && s.order.every((id) => isTerminal(s.subtasks[id]!));
}

/**
 * "Decompose again": once every subtask of the batches so far is terminal, ask the model for more unless it
 * already returned none or `maxRounds` batches were created.
 */
export function shouldDecomposeAgain(s: DecompositionState, maxRounds = MAX_ROUNDS): boolean {
  return s.phase === "active" && s.round > 0 && allTerminal(s) && !s.modelDone && s.round < maxRounds;
}

/** The next step of a decomposition's actor, decided from its state alone (so a restart continues it). */
export type Step =
  | { kind: "plan" }
  | { kind: "publish-subtasks"; tasks: Task[] }
  | { kind: "publish-atomic" }
  | { kind: "finish" }
  | { kind: "publish-aggregate" }
  | { kind: "wait" }
  | { kind: "idle" };

/**
 * - `atomic`/`done`: publish the parent / the aggregate once, then idle;
 * - `active`, no batch yet: plan (the first model call);
 * - unpublished subtasks: publish them (creation order);
 * - some subtask not terminal: wait for handoffs and merge outcomes;
 * - all terminal: plan again ({@link shouldDecomposeAgain}) or finish.
 */
export function decideNext(s: DecompositionState, maxRounds = MAX_ROUNDS): Step {
  if (s.phase === "atomic") return s.outPublished ? { kind: "idle" } : { kind: "publish-atomic" };
  if (s.phase === "done") return s.outPublished ? { kind: "idle" } : { kind: "publish-aggregate" };
  if (s.round === 0) return { kind: "plan" };
  const unpublished = s.order.map((id) => s.subtasks[id]!).filter((r) => !r.published);
  if (unpublished.length > 0) return { kind: "publish-subtasks", tasks: unpublished.map((r) => r.task) };
  if (!allTerminal(s)) return { kind: "wait" };
  return shouldDecomposeAgain(s, maxRounds) ? { kind: "plan" } : { kind: "finish" };
}

/** How one subtask counts for the parent. */
export type SubtaskOutcome = "complete" | "partial" | "failed";

/**
 * `complete`: handoff complete and nothing left unmerged (merged, or skipped because there was nothing to
 * merge, e.g. a nested aggregate); `partial`: a partial handoff whose work merged; `failed`: anything else
 * (failed/blocked handoffs, merge conflicts or failures, unmerged partial work).
 */
export function subtaskOutcome(r: SubtaskRecord): SubtaskOutcome {
  const h = r.handoff;
  if (h?.status === "complete" && (r.merge === "merged" || r.merge === "skipped")) return "complete";
  if (h?.status === "partial" && r.merge === "merged") return "partial";
  return "failed";
}

/** Aggregate status: `complete` if every subtask is complete, `partial` if some landed work, `failed` if none. */
export function aggregateStatus(s: DecompositionState): HandoffStatus {
  const outcomes = s.order.map((id) => subtaskOutcome(s.subtasks[id]!));
  if (outcomes.length > 0 && outcomes.every((o) => o === "complete")) return "complete";
  return outcomes.some((o) => o !== "failed") ? "partial" : "failed";
}

/**
 * The one handoff reported for the parent: status from {@link aggregateStatus}; `filesChanged` the union (first
 * seen order); concerns and suggestions prefixed `[<subId>] ` (plus a concern for every subtask that did not
 * land); metrics summed over subtasks, `tokensUsed` also counting the subplanner's own calls, and
 * `durationMs` = wall time of the decomposition (`now - startedAt`). No `head`: there is nothing to merge,
 * subtask branches are merged one by one.
 */
export function aggregate(s: DecompositionState, now: number): Handoff {
  const recs = s.order.map((id) => s.subtasks[id]!);
  const files: string[] = [];
  const seen = new Set<string>();
  const concerns: string[] = [];
  const suggestions: string[] = [];
  const metrics: HandoffMetrics = {
    linesAdded: 0,
    linesRemoved: 0,
    filesCreated: 0,
    filesModified: 0,
    tokensUsed: s.tokens,
    toolCallCount: 0,
    durationMs: Math.max(0, now - s.startedAt),
  };
  const counts = { complete: 0, partial: 0, failed: 0 };
  for (const r of recs) {
    const id = r.task.id;
    const h = r.handoff;
    counts[subtaskOutcome(r)]++;
    for (const f of h?.filesChanged ?? []) {
      if (!seen.has(f)) {
        seen.add(f);
        files.push(f);
      }
    }
    for (const c of h?.concerns ?? []) concerns.push(`[${id}] ${c}`);
    for (const c of h?.suggestions ?? []) suggestions.push(`[${id}] ${c}`);
    if (subtaskOutcome(r) === "failed") {
      const merge = r.merge ? `merge ${r.merge}${r.mergeDetail ? ` (${r.mergeDetail})` : ""}` : "no merge";
      concerns.push(`[${id}] did not land: handoff ${h?.status ?? "missing"}, ${merge}`);
    }
    if (h) {
      metrics.linesAdded += h.metrics.linesAdded;
      metrics.linesRemoved += h.metrics.linesRemoved;
      metrics.filesCreated += h.metrics.filesCreated;
      metrics.filesModified += h.metrics.filesModified;
      metrics.tokensUsed += h.metrics.tokensUsed;
      metrics.toolCallCount += h.metrics.toolCallCount;
    }
  }
  const lines = recs.map((r) => `- ${r.task.id}: ${r.handoff?.status ?? "?"}, merge ${r.merge ?? "?"}`);
  const summary = [
    `Decomposed into ${recs.length} subtask(s) over ${s.round} round(s): ${counts.complete} complete, ${counts.partial} partial, ${counts.failed} failed.`,
    ...lines,
  ].join("\n");
  return {
    taskId: s.parent.id,
    runId: s.parent.runId,
    status: aggregateStatus(s),
    summary,
    filesChanged: files,
    concerns,
    suggestions,
    metrics,
    branch: s.parent.branch,
    task: s.parent,
  };
}

/** Ends the decomposition: `done` with its aggregate handoff computed at `now` (stored so a restart republishes it as is). */
export function finish(s: DecompositionState, now: number): DecompositionState {
  if (s.phase !== "active") return s;
  return { ...s, phase: "done", finishedAt: now, aggregate: aggregate(s, now), outPublished: false };
}

/** Marks the phase output (atomic parent or aggregate) as published. */
export function markOutPublished(s: DecompositionState): DecompositionState {
  return s.outPublished ? s : { ...s, outPublished: true };
}
