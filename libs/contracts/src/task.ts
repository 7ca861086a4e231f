import { z } from "zod";
import { RunId, TaskId } from "./ids.ts";

/**
 * Why a task exists. `plan`: the root planner; `subtask`: a subplanner decomposition;
 * `fix`: a reconciler fix task; `conflict-fix`: the merger's conflict resolution task; `retry`: a second attempt.
 */
export const TaskKind = z.enum(["plan", "subtask", "fix", "conflict-fix", "retry"]);
export type TaskKind = z.infer<typeof TaskKind>;

/**
 * A unit of work for one sandbox. `scope` lists repo-relative files the task may touch.
 * `priority` 1 is most urgent (fixes), 10 least; the planner's default is 5.
 * `attempt` counts from 1. `depth` is 0 for root tasks and grows by one per decomposition.
 */
export const Task = z.object({
  id: TaskId,
  runId: RunId,
  parentId: TaskId.optional(),
  kind: TaskKind.default("plan"),
  description: z.string().min(1),
  scope: z.array(z.string().min(1)).max(200),
  acceptance: z.string(),
  branch: z.string().min(1),
  priority: z.number().int().min(1).max(10),
  depth: z.number().int().min(0),
  attempt: z.number().int().min(1),
  /** The target repository: a local path or a git URL (copied from the run). */
  repo: z.string().min(1),
  /** The branch tasks start from and merge into. */
  baseBranch: z.string().min(1),
  /** Model for this attempt (a retry may go to LLM_MODEL_FALLBACK); absent = the dispatcher's LLM_MODEL. */
  model: z.string().min(1).optional(),
  /**
   * Conflict-fix tasks only: the branch whose rebase onto the base conflicted. The sandbox starts from it,
   * rebased onto `origin/<baseBranch>` with the conflicts left in the tree; the worker resolves them.
   */
  conflictBranch: z.string().min(1).optional(),
  /** Conflict-fix tasks only: the task whose work they carry to the base (it takes over that task's leases). */
  resolves: TaskId.optional(),
  /** Extra context for the worker prompt: the previous attempt's handoff, the failing check output, … */
  context: z.string().optional(),
  /** Reconciler fix tasks only: the failure signature they address (their dedup key). */
  signature: z.string().optional(),
});
export type Task = z.infer<typeof Task>;
export type TaskInput = z.input<typeof Task>;

/** Diff and agent statistics of one attempt. Durations in ms, tokens as counted by the model endpoint. */
export const HandoffMetrics = z.object({
  linesAdded: z.number().int().min(0),
  linesRemoved: z.number().int().min(0),
  filesCreated: z.number().int().min(0),
  filesModified: z.number().int().min(0),
  tokensUsed: z.number().int().min(0),
  toolCallCount: z.number().int().min(0),
  durationMs: z.number().min(0),
});
export type HandoffMetrics = z.infer<typeof HandoffMetrics>;

export const HandoffStatus = z.enum(["complete", "partial", "blocked", "failed"]);
export type HandoffStatus = z.infer<typeof HandoffStatus>;

/**
 * What a worker reports when its sandbox finishes. `head` is the sha of the pushed branch, absent when
 * nothing was pushed. `task` is the task as dispatched, so consumers need no lookup.
 */
export const Handoff = z.object({
  taskId: TaskId,
  runId: RunId,
  status: HandoffStatus,
  summary: z.string(),
  filesChanged: z.array(z.string()),
  concerns: z.array(z.string()),
  suggestions: z.array(z.string()),
  metrics: HandoffMetrics,
  branch: z.string(),
  head: z.string().optional(),
  task: Task,
});
export type Handoff = z.infer<typeof Handoff>;

/** Zeroed metrics, for handoffs of attempts that never ran an agent. */
export const emptyMetrics = (): HandoffMetrics => ({
  linesAdded: 0,
  linesRemoved: 0,
  filesCreated: 0,
  filesModified: 0,
  tokensUsed: 0,
  toolCallCount: 0,
  durationMs: 0,
});

/**
 * A synthetic `failed` handoff for an attempt that produced none (sandbox timed out, worker crashed, setup
 * failed, dispatch gave up). `reason` becomes the summary and the only concern; metrics are zeroed except
 * `durationMs` (wall time in ms, rounded, ≥ 0) and the agent's counters the worker reported before it was
 * stopped (`seen`: the last progress line's tool calls and tokens); nothing was pushed, so there is no `head`. Pure.
 */
export function failedHandoff(
  task: Task,
  reason: string,
  durationMs: number,
  seen: { toolCalls?: number; tokens?: number } = {},
): Handoff {
  return {
    taskId: task.id,
    runId: task.runId,
    status: "failed",
    summary: reason,
    filesChanged: [],
    concerns: [reason],
    suggestions: [],
    metrics: {
      ...emptyMetrics(),
      durationMs: Math.max(0, Math.round(durationMs)),
      toolCallCount: Math.max(0, Math.round(seen.toolCalls ?? 0)),
      tokensUsed: Math.max(0, Math.round(seen.tokens ?? 0)),
    },
    branch: task.branch,
    task,
  };
}

/**
 * What a planner model (root planner or subplanner) answers: `{ scratchpad, tasks: [...] }` as asked by
 * prompts/root-planner.md and prompts/subplanner.md. Only `description` is required per task; the planner
 * fills in ids, branches and defaults.
 */
export const PlanOutput = z.object({
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
export type PlanOutput = z.infer<typeof PlanOutput>;
