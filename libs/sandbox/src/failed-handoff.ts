import { emptyMetrics, type Handoff, type Task } from "@longshot/contracts";

/**
 * A synthetic `failed` handoff for an attempt that produced none (sandbox timed out, worker crashed, setup
 * failed, dispatch gave up). `reason` becomes the summary and the only concern; metrics are zeroed except
 * `durationMs` (wall time in ms, rounded, ≥ 0); nothing was pushed, so there is no `head`. Pure.
 */
export function failedHandoff(task: Task, reason: string, durationMs: number): Handoff {
  return {
    taskId: task.id,
    runId: task.runId,
    status: "failed",
    summary: reason,
    filesChanged: [],
    concerns: [reason],
    suggestions: [],
    metrics: { ...emptyMetrics(), durationMs: Math.max(0, Math.round(durationMs)) },
    branch: task.branch,
    task,
  };
}
