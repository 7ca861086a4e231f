import { z } from "zod";
import { TaskId } from "./ids.ts";
import { AcceptedRun, RequestError } from "./request.ts";
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
  "run.rejected": z.object({ errors: z.array(RequestError) }),
  "run.completed": RunSummary,
  "planner.iteration": z.object({
    iteration: z.number().int(),
    newTasks: z.number().int(),
    tokens: z.number().int(),
    done: z.boolean(),
  }),
  "task.planned": z.object({ task: Task }),
  "task.started": z.object({ taskId: TaskId, branch: z.string(), sandbox: z.string() }),
  "task.progress": z.object({
    taskId: TaskId,
    message: z.string(),
    toolCalls: z.number().int().optional(),
    tokens: z.number().int().optional(),
  }),
  "task.finished": z.object({
    taskId: TaskId,
    status: HandoffStatus,
    summary: z.string(),
    durationMs: z.number(),
    tokensUsed: z.number().int(),
  }),
  "merge.merged": z.object({
    taskId: TaskId,
    /** The task attempt whose handoff this merge decided. */
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
  }),
  "merge.conflict": z.object({
    taskId: TaskId,
    attempt: z.number().int().min(1),
    branch: z.string(),
    files: z.array(z.string()),
    attempts: z.number().int(),
  }),
  "merge.skipped": z.object({
    taskId: TaskId,
    attempt: z.number().int().min(1),
    branch: z.string(),
    reason: z.string(),
  }),
  "merge.failed": z.object({
    taskId: TaskId,
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
