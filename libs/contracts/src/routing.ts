import type { TaskQueue } from "./subjects.ts";
import type { Task } from "./task.ts";

/**
 * Request headers the LLM gateway reads (services/llm-gateway): the task a call belongs to (session affinity keeps
 * a task on one replica) and, for service tokens issued with `anyRun`, the run to account the call to.
 */
export const GatewayHeaders = {
  taskId: "x-longshot-task-id",
  runId: "x-longshot-run-id",
} as const;

/** A task with at least this many files in scope is decomposed by the subplanner (inventory §1.6). */
export const DECOMPOSE_MIN_SCOPE = 4;
/** Tasks at this depth or deeper are never decomposed again (root tasks have depth 0). */
export const DECOMPOSE_MAX_DEPTH = 3;

/**
 * Which queue a task goes to: `decompose` (the subplanner) when its scope has ≥ {@link DECOMPOSE_MIN_SCOPE}
 * files and its depth is < {@link DECOMPOSE_MAX_DEPTH}, otherwise `execute` (a sandbox via the dispatcher).
 * Conflict-fix tasks always execute: their sandbox must start from the conflicting branch. Pure; used by
 * every publisher of tasks (planner, subplanner) so routing is decided in one place.
 */
export function taskQueue(task: Pick<Task, "scope" | "depth"> & Partial<Pick<Task, "kind">>): TaskQueue {
  if (task.kind === "conflict-fix") return "execute";
  return task.scope.length >= DECOMPOSE_MIN_SCOPE && task.depth < DECOMPOSE_MAX_DEPTH
    ? "decompose"
    : "execute";
}
