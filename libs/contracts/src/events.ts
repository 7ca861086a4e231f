import { z } from "zod";
import { TaskId } from "./ids.ts";
import { AcceptedRun, RunRejected } from "./request.ts";
import { HandoffStatus, Task } from "./task.ts";

/** Counts of tasks by outcome, as reported in a run summary. */
export const TaskCounts = z.object({
  total: z.number().int(),
  complete: z.number().int(),
  partial: z.number().int(),
  blocked: z.number().int(),
  failed: z.number().int(),
});
export type TaskCounts = z.infer<typeof TaskCounts>;

/** Terminal status of a run: green only when every task merged and the last sweep of `main` is green. */
export const RunStatus = z.enum(["green", "red", "cancelled"]);
export type RunStatus = z.infer<typeof RunStatus>;

/** Payload of `run.completed` (public contract v1). `durationMs` in ms; `tokens` summed over all roles. */
export const RunSummary = z.object({
  status: RunStatus,
  tasks: TaskCounts,
  merged: z.number().int(),
  conflicts: z.number().int(),
  fixTasks: z.number().int(),
  /** Conflict-fix tasks filed by the run (optional, added in v1.1). */
  conflictFixTasks: z.number().int().optional(),
  /** Tasks that needed a second attempt. */
  retriedTasks: z.number().int().optional(),
  /** Tasks decomposed by the subplanner. */
  decomposedTasks: z.number().int().optional(),
  durationMs: z.number(),
  tokens: z.number().int(),
  repo: z.string(),
  head: z.string(),
  reason: z.string().optional(),
  /** Tasks whose work is not on the base branch, and why (present when there are any; v1.1). */
  unmerged: z.array(z.object({ taskId: z.string(), reason: z.string() })).optional(),
});
export type RunSummary = z.infer<typeof RunSummary>;

/** One check of a reconciler sweep. `output` is the tail of stdout+stderr (≤ 4000 chars). */
export const SweepCheck = z.object({
  name: z.enum(["install", "build", "typecheck", "test", "conflict-markers"]),
  command: z.string(),
  ok: z.boolean(),
  exitCode: z.number().int().nullable(),
  output: z.string(),
  durationMs: z.number(),
});
export type SweepCheck = z.infer<typeof SweepCheck>;

/**
 * Event payload schemas by event type. The event type is also the last two subject tokens:
 * `longshot.event.<runId>.<entity>.<verb>`.
 */
export const EventData = {
  "run.accepted": AcceptedRun,
  "run.rejected": RunRejected,
  "run.completed": RunSummary,
  /** The run was cancelled (`longshot.cancel`): no task starts any more, running sandboxes are terminated. */
  "run.cancelled": z.object({ reason: z.string(), by: z.string().optional() }),
  "planner.iteration": z.object({
    iteration: z.number().int(),
    newTasks: z.number().int(),
    tokens: z.number().int(),
    done: z.boolean(),
  }),
  "task.planned": z.object({ task: Task }),
  "task.started": z.object({
    taskId: TaskId,
    branch: z.string(),
    sandbox: z.string(),
    /** The task attempt whose sandbox started (v1.1). */
    attempt: z.number().int().min(1).optional(),
  }),
  "task.progress": z.object({
    taskId: TaskId,
    /** The task attempt reporting (v1.1). */
    attempt: z.number().int().min(1).optional(),
    message: z.string(),
    toolCalls: z.number().int().optional(),
    tokens: z.number().int().optional(),
  }),
  "task.finished": z.object({
    taskId: TaskId,
    /** The task attempt that finished (v1.1). */
    attempt: z.number().int().min(1).optional(),
    status: HandoffStatus,
    summary: z.string(),
    durationMs: z.number(),
    tokensUsed: z.number().int(),
  }),
  "merge.merged": z.object({
    taskId: TaskId,
    /** The task attempt whose handoff this merge decided. */
    /** The parent task when this task is a subtask of a decomposition (so any subplanner instance finds it). */
    parentId: TaskId.optional(),
    attempt: z.number().int().min(1),
    /** The target repository and base branch, so a reconciler can sweep without a lookup. */
    repo: z.string(),
    baseBranch: z.string(),
    branch: z.string(),
    /** The new head of the base branch after the merge. */
    sha: z.string(),
    strategy: z.string(),
    rebased: z.boolean(),
    attempts: z.number().int(),
    /** Merge queue verification (v1.1): the landed tree passed the target's check set before it was pushed. */
    verified: z.boolean().optional(),
    /** The tree of `sha` (what was verified; a later commit with this tree needs no new verification). */
    tree: z.string().optional(),
    /** Candidates landed by the same push of the base (1 = alone). */
    batchSize: z.number().int().min(1).optional(),
    /** How long the verification of this tree took, ms (0 when its verdict came from the cache). */
    verifyMs: z.number().optional(),
    /** From the handoff's publication to this landing, ms. */
    handoffToLandingMs: z.number().optional(),
  }),
  /**
   * The merge queue verified a candidate: the tree of the base with this task's branch (and every candidate
   * ahead of it in the stack) applied passed the target's check set in a sandbox. Informational; the landing
   * is `merge.merged`.
   */
  "merge.verified": z.object({
    taskId: TaskId,
    attempt: z.number().int().min(1),
    branch: z.string(),
    /** The candidate commit (base + the stack up to this task) and its tree. */
    commit: z.string(),
    tree: z.string(),
    /** Position of the candidate in its speculative stack (1 = directly on the base). */
    position: z.number().int().min(1),
    /** Candidates stacked and verified at once when it was verified. */
    stackSize: z.number().int().min(1),
    /** Verification wall time, ms (0 when cached). */
    durationMs: z.number(),
    /** The verdict came from an earlier verification of the same tree. */
    cached: z.boolean(),
  }),
  /**
   * The merge queue refused to land a candidate: the base with this task's branch applied fails the target's
   * check set, while the base with every candidate ahead of it passes (the branch is the culprit). Nothing of
   * it reached the base. The planner retries the task with `reason` (and the output) as context.
   */
  "merge.rejected": z.object({
    taskId: TaskId,
    /** The parent task when this task is a subtask of a decomposition (so any subplanner instance finds it). */
    parentId: TaskId.optional(),
    attempt: z.number().int().min(1),
    branch: z.string(),
    commit: z.string(),
    tree: z.string(),
    /** One line for people and planners: the failing check, its command and exit code, and the output tail. */
    reason: z.string(),
    /** The first failing check (`name`, `command`, `exitCode`) and its output tail (≤ 4000 chars). */
    check: SweepCheck,
    /** Every check run on the candidate, outputs trimmed to their last 500 chars. */
    checks: z.array(SweepCheck),
    /** Verification wall time, ms (0 when cached). */
    durationMs: z.number(),
    /** Candidates stacked when the culprit was found. */
    stackSize: z.number().int().min(1),
    /** Stack positions the failure was traced back, from the first red prefix seen to its culprit. */
    bisectionDepth: z.number().int().min(0),
    /** From the handoff's publication to the rejection, ms. */
    handoffToRejectionMs: z.number().optional(),
  }),
  "merge.conflict": z.object({
    taskId: TaskId,
    /** The parent task when this task is a subtask of a decomposition (so any subplanner instance finds it). */
    parentId: TaskId.optional(),
    attempt: z.number().int().min(1),
    branch: z.string(),
    files: z.array(z.string()),
    attempts: z.number().int(),
  }),
  "merge.skipped": z.object({
    taskId: TaskId,
    /** The parent task when this task is a subtask of a decomposition (so any subplanner instance finds it). */
    parentId: TaskId.optional(),
    attempt: z.number().int().min(1),
    branch: z.string(),
    reason: z.string(),
  }),
  "merge.failed": z.object({
    taskId: TaskId,
    /** The parent task when this task is a subtask of a decomposition (so any subplanner instance finds it). */
    parentId: TaskId.optional(),
    attempt: z.number().int().min(1),
    branch: z.string(),
    reason: z.string(),
  }),
  /**
   * The reconciler's proposal to fix a red base branch: ≤ 5 tasks from the model, all for one failure
   * `signature` (a hash of the normalized failing output, independent of the sha). The planner files them
   * as fix tasks unless a fix for the same signature is still in flight.
   */
  "fix.requested": z.object({
    sha: z.string(),
    signature: z.string(),
    summary: z.string(),
    tasks: z
      .array(
        z.object({
          description: z.string().min(1),
          scope: z.array(z.string()).max(3),
          acceptance: z.string(),
        }),
      )
      .max(5),
  }),
  "sweep.requested": z.object({
    requestId: z.string(),
    reason: z.string(),
    repo: z.string(),
    baseBranch: z.string(),
  }),
  "health.swept": z.object({
    /** The commit of the base branch that was checked. */
    sha: z.string(),
    green: z.boolean(),
    checks: z.array(SweepCheck),
    conflictFiles: z.array(z.string()),
    requestId: z.string().optional(),
    durationMs: z.number(),
  }),
  /**
   * The reconciler found the base red at a commit the merge queue had verified, and re-ran the checks once on
   * that commit to tell why: `flaky` (the re-run passed: a check is flaky; the re-run's green result stands) or
   * `queue-defect` (it failed again: the queue landed a tree that fails, or the environment drifted since).
   */
  "health.verified-red": z.object({
    sha: z.string(),
    cause: z.enum(["flaky", "queue-defect"]),
    /** Names of the checks that failed on the first sweep, and on the re-run. */
    failing: z.array(z.string()),
    rerunFailing: z.array(z.string()),
    /** The failing checks of the first sweep (output tails). */
    checks: z.array(SweepCheck),
  }),
  /**
   * The monitor saw no progress (`task.started` / `task.progress`) of a running task attempt for `idleMs`, at
   * least STUCK_AFTER_MS. `report` counts the reports of this attempt (one more per STUCK_AFTER_MS of silence).
   * `action` is the monitor's STUCK_POLICY: `alert` only reports; `retry` asks the dispatcher running the attempt
   * to stop its sandbox, so the attempt ends with a failed handoff and the planner retries the task as it retries
   * every failure.
   */
  "task.stuck": z.object({
    taskId: TaskId,
    attempt: z.number().int().min(1),
    idleMs: z.number().min(0),
    /** When the attempt last showed progress (ISO-8601 UTC). */
    lastActivityAt: z.string(),
    report: z.number().int().min(1),
    action: z.enum(["alert", "retry"]),
  }),
  /**
   * Something a person should look at, raised by the monitor. `empty-diff-complete`: a worker handed off
   * `complete` with no change at all (nothing added, removed, created or modified).
   */
  "alert.raised": z.object({
    kind: z.enum(["empty-diff-complete"]),
    taskId: TaskId.optional(),
    attempt: z.number().int().min(1).optional(),
    message: z.string(),
  }),
  "error.rejected": z.object({
    reason: z.string(),
    subject: z.string(),
    stream: z.string(),
    streamSeq: z.number().int(),
  }),
} as const;

/** Every event type on `longshot.event.<runId>.>`. */
export type EventType = keyof typeof EventData;
/** The payload of event type `T`. */
export type EventPayload<T extends EventType> = z.infer<(typeof EventData)[T]>;
export const EVENT_TYPES = Object.keys(EventData) as EventType[];
