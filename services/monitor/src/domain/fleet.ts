import type {
  AttemptRecord,
  Envelope,
  Handoff,
  HandoffStatus,
  LlmRunUsage,
  TaskKind,
} from "@longshot/contracts";

/**
 * Where a task stands, from the monitor's view of the event log: `planned` (published, no sandbox yet),
 * `decomposed` (split by the subplanner into subtasks), `running` (its sandbox started), `handed_off` (its
 * sandbox finished; waiting for the merge queue), then the merge queue's verdict: `merged`, `conflict`,
 * `rejected` (failed verification), `skipped` (nothing to merge) or `failed`.
 */
export type TaskPhase =
  | "planned"
  | "decomposed"
  | "running"
  | "handed_off"
  | "merged"
  | "conflict"
  | "rejected"
  | "skipped"
  | "failed";
export const TASK_PHASES: readonly TaskPhase[] = [
  "planned",
  "decomposed",
  "running",
  "handed_off",
  "merged",
  "conflict",
  "rejected",
  "skipped",
  "failed",
];

/** Merge queue verdicts the monitor counts (`merge.<outcome>` events). */
export type MergeOutcome = "merged" | "conflict" | "rejected" | "skipped" | "failed";
export const MERGE_OUTCOMES: readonly MergeOutcome[] = [
  "merged",
  "conflict",
  "rejected",
  "skipped",
  "failed",
];

/** The latest attempt of one task. Times are ms since the epoch, taken from event timestamps (never the clock). */
export interface TaskView {
  runId: string;
  taskId: string;
  kind: TaskKind;
  attempt: number;
  phase: TaskPhase;
  /** When the task was first planned (attempt 1): the start of its plan-to-merge time. */
  plannedAt: number;
  /** When the current attempt's sandbox started, and when it last showed progress. */
  startedAt?: number;
  lastActivityAt?: number;
  /** `task.stuck` reports of the current attempt so far. */
  stuckReports: number;
}

/** Status of a run: `active` until `run.completed` says green, red or cancelled. */
export type RunStatus = "active" | "green" | "red" | "cancelled";
export const RUN_STATUSES: readonly RunStatus[] = ["active", "green", "red", "cancelled"];

/** One run. `redMs` sums the closed intervals its base branch was red (a sweep red until a sweep green). */
export interface RunView {
  runId: string;
  status: RunStatus;
  acceptedAt?: number;
  completedAt?: number;
  /** The base branch by the last sweep: unknown before the first. */
  health: "unknown" | "green" | "red";
  redSince?: number;
  redMs: number;
  /** Who cancelled it (`run.cancelled`), e.g. `monitor`, `cli`. */
  cancelledBy?: string;
}

/** Cumulative histogram data: `counts[i]` observations ≤ `bounds[i]` (non-cumulative per bucket, +Inf last). */
export interface HistogramData {
  bounds: readonly number[];
  counts: number[];
  sum: number;
  count: number;
}

/** An empty histogram over `bounds` (upper bounds, ascending; +Inf implied). */
export function emptyHistogram(bounds: readonly number[]): HistogramData {
  return { bounds, counts: new Array(bounds.length + 1).fill(0), sum: 0, count: 0 };
}

/** `h` with one more observation `v`. Pure: returns a new histogram. */
export function observe(h: HistogramData, v: number): HistogramData {
  const counts = [...h.counts];
  let i = h.bounds.findIndex((b) => v <= b);
  if (i < 0) i = h.bounds.length;
  counts[i]! += 1;
  return { bounds: h.bounds, counts, sum: h.sum + v, count: h.count + 1 };
}

/** Seconds buckets of the monitor's histograms: 1 s doubling to ≈ 9 h (1, 2, 4, … 32768). */
export const DURATION_BUCKETS: readonly number[] = Array.from({ length: 16 }, (_, i) => 2 ** i);

/** Tool-call buckets of the attempts histogram: 0, then 1 doubling to 512. */
export const TOOL_CALL_BUCKETS: readonly number[] = [0, ...Array.from({ length: 10 }, (_, i) => 2 ** i)];

/** What the monitor keeps of one attempt record (`longshot-attempts`): its labels and its tool calls. */
export interface AttemptFacts {
  runId: string;
  model: string;
  harness: string;
  status: HandoffStatus;
  toolCalls: number;
}

/** The facts of an attempt record. Pure. */
export function attemptFacts(r: AttemptRecord): AttemptFacts {
  return {
    runId: r.runId,
    model: r.model,
    harness: r.harness,
    status: r.handoff.status,
    toolCalls: r.handoff.metrics.toolCallCount,
  };
}

/** What the monitor folds: an event of the EVENTS stream, or a handoff of the HANDOFFS stream. */
export type FleetInput =
  | { kind: "event"; event: Envelope & { type: string } }
  | { kind: "handoff"; envelope: Envelope<Handoff> };

const key = (runId: string, taskId: string) => `${runId}/${taskId}`;
const at = (env: Envelope) => {
  const t = Date.parse(env.ts);
  return Number.isFinite(t) ? t : 0;
};

/** True for a `complete` handoff that changed nothing at all (no line, no file). */
export function isEmptyDiffComplete(h: Handoff): boolean {
  const m = h.metrics;
  return (
    h.status === "complete" &&
    h.filesChanged.length === 0 &&
    m.linesAdded === 0 &&
    m.linesRemoved === 0 &&
    m.filesCreated === 0 &&
    m.filesModified === 0
  );
}

/** A new view of `task`'s attempt `attempt`, planned at `ts` (keeps the first plan time of an earlier attempt). */
function plannedView(
  prev: TaskView | undefined,
  t: { runId: string; id: string; kind: TaskKind; attempt: number },
  ts: number,
): TaskView {
  return {
    runId: t.runId,
    taskId: t.id,
    kind: t.kind,
    attempt: t.attempt,
    phase: "planned",
    plannedAt: prev?.plannedAt ?? ts,
    stuckReports: 0,
  };
}

/**
 * The next view of one task after event `type` with payload `data` at `ts`; `undefined` in, `undefined` out when
 * the event says nothing about a task it has not seen planned (its plan fell out of the stream's retention).
 * Events of an older attempt than the view's are ignored (a late duplicate), except merges, which count anyway.
 */
export function evolveTask(
  view: TaskView | undefined,
  type: string,
  data: Record<string, unknown>,
  ts: number,
): TaskView | undefined {
  const attempt = typeof data.attempt === "number" ? data.attempt : view?.attempt;
  const current = view !== undefined && attempt === view.attempt;
  switch (type) {
    case "task.started":
      if (!current || (view.phase !== "planned" && view.phase !== "running")) return view;
      return { ...view, phase: "running", startedAt: ts, lastActivityAt: ts };
    case "task.progress":
      if (!current || view.phase !== "running") return view;
      return { ...view, lastActivityAt: Math.max(ts, view.lastActivityAt ?? 0) };
    case "task.finished":
      if (!current || (view.phase !== "running" && view.phase !== "planned")) return view;
      return { ...view, phase: "handed_off" };
    case "task.stuck":
      if (!current) return view;
      return { ...view, stuckReports: Math.max(view.stuckReports, Number(data.report) || 1) };
    default:
      if (type.startsWith("merge.") && view !== undefined) {
        const outcome = type.slice("merge.".length);
        if (!(MERGE_OUTCOMES as readonly string[]).includes(outcome) || !current) return view;
        return { ...view, phase: outcome as MergeOutcome };
      }
      return view;
  }
}

/** The next view of one run after event `type` (payload `data`) at `ts`. */
export function evolveRun(
  view: RunView | undefined,
  runId: string,
  type: string,
  data: Record<string, unknown>,
  ts: number,
): RunView {
  const run: RunView = view ?? { runId, status: "active", health: "unknown", redMs: 0 };
  switch (type) {
    case "run.accepted":
      return { ...run, acceptedAt: run.acceptedAt ?? ts };
    case "run.cancelled":
      return { ...run, cancelledBy: typeof data.by === "string" ? data.by : "unknown" };
    case "run.completed": {
      if (run.status !== "active") return run;
      const status =
        data.status === "green" || data.status === "red" || data.status === "cancelled" ? data.status : "red";
      const closed = run.health === "red" && run.redSince !== undefined ? ts - run.redSince : 0;
      const { redSince: _, ...rest } = run;
      return { ...rest, status, completedAt: ts, redMs: run.redMs + Math.max(0, closed) };
    }
    case "health.swept": {
      if (run.status !== "active") return run;
      if (data.green === true) {
        if (run.health !== "red") return { ...run, health: "green" };
        const { redSince, ...rest } = run;
        return { ...rest, health: "green", redMs: run.redMs + Math.max(0, ts - (redSince ?? ts)) };
      }
      return run.health === "red" ? run : { ...run, health: "red", redSince: ts };
    }
    default:
      return run;
  }
}

/** Counters of one run (cumulative). */
export interface RunCounters {
  merges: Record<MergeOutcome, number>;
  /** Task attempts planned, by task kind (`plan`, `subtask`, `fix`, `conflict-fix`, `retry`). */
  planned: Partial<Record<TaskKind, number>>;
  stuckReports: number;
  alerts: Record<string, number>;
}

const emptyCounters = (): RunCounters => ({
  merges: { merged: 0, conflict: 0, rejected: 0, skipped: 0, failed: 0 },
  planned: {},
  stuckReports: 0,
  alerts: {},
});

/**
 * The monitor's projection of the fleet: a deterministic fold of the EVENTS and HANDOFFS streams (plus the LLM
 * gateway's usage records and the dispatchers' attempt records, each the latest value of its key). Applying the same inputs in the same order gives the same figures, so a restarted
 * monitor that replays the streams reports what an uninterrupted one reports. Each envelope id counts once (a
 * re-published event outside JetStream's dedup window is not counted twice). No clock, no I/O: figures that
 * depend on "now" take it as an argument.
 */
export class Fleet {
  readonly runs = new Map<string, RunView>();
  readonly tasks = new Map<string, TaskView>();
  readonly counters = new Map<string, RunCounters>();
  readonly usage = new Map<string, LlmRunUsage>();
  /** Attempt records by their key `<run>.<task>.<attempt>` (a rewritten record replaces the earlier one). */
  readonly attempts = new Map<string, AttemptFacts>();
  /** Time from a task's first plan to its merge, s. */
  planToMerge = emptyHistogram(DURATION_BUCKETS);
  /** Sandbox run time by handoff status, s (`task.finished`). */
  readonly sandboxRuns = new Map<HandoffStatus, HistogramData>();
  /** Inputs applied (distinct envelope ids). */
  applied = 0;
  /** Empty-diff `complete` handoffs (by the id of the alert they call for) and the alerts already raised. */
  private readonly emptyDiffs = new Map<string, AlertToRaise>();
  private readonly raised = new Set<string>();
  private readonly seen = new Set<string>();
  private readonly phaseCount = new Map<string, Map<TaskPhase, number>>();

  /** Applies one input; returns false when its envelope id was applied before (nothing changes). */
  apply(input: FleetInput): boolean {
    const env = input.kind === "event" ? input.event : input.envelope;
    const id = `${input.kind}:${env.id}`;
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    this.applied++;
    if (input.kind === "handoff") this.applyHandoff(input.envelope);
    else this.applyEvent(input.event);
    return true;
  }

  /** Sets the record of attempt `key` (`longshot-attempts`; a rerun of the same attempt replaces it). */
  setAttempt(key: string, record: AttemptRecord): void {
    this.attempts.set(key, attemptFacts(record));
  }

  /** Replaces the usage record of a run (the gateway rewrites it as it counts). */
  setUsage(usage: LlmRunUsage): void {
    this.usage.set(usage.runId, usage);
  }

  /** Tasks per phase of run `runId`. */
  phases(runId: string): Map<TaskPhase, number> {
    return this.phaseCount.get(runId) ?? new Map();
  }

  countersOf(runId: string): RunCounters {
    let c = this.counters.get(runId);
    if (!c) {
      c = emptyCounters();
      this.counters.set(runId, c);
    }
    return c;
  }

  private applyEvent(env: Envelope & { type: string }): void {
    const ts = at(env);
    const data = (env.data ?? {}) as Record<string, unknown>;
    const type = env.type;
    if (type.startsWith("run.") || type === "health.swept") {
      this.runs.set(env.runId, evolveRun(this.runs.get(env.runId), env.runId, type, data, ts));
      return;
    }
    if (!this.runs.has(env.runId)) this.runs.set(env.runId, evolveRun(undefined, env.runId, "", {}, ts));
    const c = this.countersOf(env.runId);
    if (type === "task.planned") {
      const task = data.task as {
        id: string;
        runId: string;
        kind: TaskKind;
        attempt: number;
        parentId?: string;
      };
      const k = key(env.runId, task.id);
      const prev = this.tasks.get(k);
      c.planned[task.kind] = (c.planned[task.kind] ?? 0) + 1;
      if (prev === undefined || task.attempt > prev.attempt) this.setTask(k, plannedView(prev, task, ts));
      if (task.parentId !== undefined) {
        const pk = key(env.runId, task.parentId);
        const parent = this.tasks.get(pk);
        if (parent && (parent.phase === "planned" || parent.phase === "running"))
          this.setTask(pk, { ...parent, phase: "decomposed" });
      }
      return;
    }
    const taskId = typeof data.taskId === "string" ? data.taskId : env.taskId;
    if (taskId === undefined) return;
    const k = key(env.runId, taskId);
    const prev = this.tasks.get(k);
    if (type === "task.finished" && typeof data.status === "string" && typeof data.durationMs === "number") {
      const status = data.status as HandoffStatus;
      const h = this.sandboxRuns.get(status) ?? emptyHistogram(DURATION_BUCKETS);
      this.sandboxRuns.set(status, observe(h, data.durationMs / 1000));
    }
    if (type === "task.stuck") c.stuckReports++;
    if (type === "alert.raised" && typeof data.kind === "string") {
      c.alerts[data.kind] = (c.alerts[data.kind] ?? 0) + 1;
      this.raised.add(env.id);
    }
    if (type.startsWith("merge.")) {
      const outcome = type.slice("merge.".length) as MergeOutcome;
      if ((MERGE_OUTCOMES as readonly string[]).includes(outcome)) {
        c.merges[outcome]++;
        if (outcome === "merged" && prev)
          this.planToMerge = observe(this.planToMerge, Math.max(0, ts - prev.plannedAt) / 1000);
      }
    }
    const next = evolveTask(prev, type, data, ts);
    if (next !== undefined && next !== prev) this.setTask(k, next);
  }

  private applyHandoff(env: Envelope<Handoff>): void {
    const h = env.data;
    if (!isEmptyDiffComplete(h)) return;
    const attempt = h.task.attempt;
    const id = `alert-empty-diff-${h.runId}-${h.taskId}-${attempt}`;
    this.emptyDiffs.set(id, {
      id,
      runId: h.runId,
      taskId: h.taskId,
      attempt,
      kind: "empty-diff-complete",
      message: `task ${h.taskId} attempt ${attempt} handed off complete with an empty diff: nothing was changed`,
    });
  }

  /**
   * Empty-diff `complete` handoffs with no `alert.raised` yet. The alert's event id is derived from the handoff, so
   * the handoff (HANDOFFS) and the alert (EVENTS) match whatever order the two streams are replayed in.
   */
  pendingAlerts(): AlertToRaise[] {
    return [...this.emptyDiffs.values()].filter((a) => !this.raised.has(a.id));
  }

  private setTask(k: string, next: TaskView): void {
    const prev = this.tasks.get(k);
    this.tasks.set(k, next);
    if (prev?.phase === next.phase) return;
    let counts = this.phaseCount.get(next.runId);
    if (!counts) {
      counts = new Map();
      this.phaseCount.set(next.runId, counts);
    }
    if (prev) counts.set(prev.phase, (counts.get(prev.phase) ?? 1) - 1);
    counts.set(next.phase, (counts.get(next.phase) ?? 0) + 1);
  }
}

/** Seconds a run's base branch has been red up to `now` (closed intervals plus the open one of an active run). */
export function redSeconds(run: RunView, now: number): number {
  const open =
    run.status === "active" && run.health === "red" && run.redSince !== undefined ? now - run.redSince : 0;
  return (run.redMs + Math.max(0, open)) / 1000;
}

/** A `task.stuck` report the monitor should publish. `id` is its deterministic event id (dedup). */
export interface StuckReport {
  id: string;
  runId: string;
  taskId: string;
  attempt: number;
  idleMs: number;
  lastActivityAt: number;
  report: number;
}

/**
 * Running task attempts of active runs whose last progress is at least `(n + 1) · stuckAfterMs` old at `now`, `n`
 * being the reports already made for the attempt: one report per STUCK_AFTER_MS of silence, so a report a
 * dispatcher missed is repeated.
 */
export function stuckTasks(fleet: Fleet, now: number, stuckAfterMs: number): StuckReport[] {
  const out: StuckReport[] = [];
  for (const t of fleet.tasks.values()) {
    if (t.phase !== "running" || t.lastActivityAt === undefined) continue;
    if (fleet.runs.get(t.runId)?.status !== "active") continue;
    const idleMs = now - t.lastActivityAt;
    const report = t.stuckReports + 1;
    if (idleMs < report * stuckAfterMs) continue;
    out.push({
      id: `stuck-${t.runId}-${t.taskId}-${t.attempt}-${report}`,
      runId: t.runId,
      taskId: t.taskId,
      attempt: t.attempt,
      idleMs,
      lastActivityAt: t.lastActivityAt,
      report,
    });
  }
  return out;
}

/** Running attempts idle for at least `stuckAfterMs` at `now` (the stuck-tasks gauge). */
export function countStuck(fleet: Fleet, now: number, stuckAfterMs: number): number {
  let n = 0;
  for (const t of fleet.tasks.values())
    if (t.phase === "running" && t.lastActivityAt !== undefined && now - t.lastActivityAt >= stuckAfterMs)
      n++;
  return n;
}

/** An `alert.raised` the monitor should publish; `id` is its deterministic event id. */
export interface AlertToRaise {
  id: string;
  runId: string;
  taskId: string;
  attempt: number;
  kind: "empty-diff-complete";
  message: string;
}

/** Run budgets: 0 = none. Tokens are prompt + completion; cost in US dollars (the gateway's price table). */
export interface RunBudgets {
  tokens: number;
  cost: number;
}

/** A cancellation the monitor should request: the plain `longshot.cancel` payload plus its dedup id. */
export interface BudgetCancel {
  id: string;
  runId: string;
  reason: string;
}

/**
 * Active runs over a budget and not yet cancelled by the monitor, with a reason that names the budget, the usage
 * and the variable to raise.
 */
export function overBudget(fleet: Fleet, budgets: RunBudgets): BudgetCancel[] {
  const out: BudgetCancel[] = [];
  for (const u of fleet.usage.values()) {
    const run = fleet.runs.get(u.runId);
    if (run?.status !== "active" || run.cancelledBy !== undefined) continue;
    let reason: string | undefined;
    if (budgets.tokens > 0 && u.totalTokens > budgets.tokens)
      reason = `token budget exceeded: ${u.totalTokens} tokens used, RUN_TOKEN_BUDGET is ${budgets.tokens}`;
    else if (budgets.cost > 0 && u.cost > budgets.cost)
      reason = `cost budget exceeded: $${u.cost.toFixed(4)} spent, RUN_COST_BUDGET is $${budgets.cost}`;
    if (reason) out.push({ id: `cancel-budget-${u.runId}`, runId: u.runId, reason });
  }
  return out;
}
