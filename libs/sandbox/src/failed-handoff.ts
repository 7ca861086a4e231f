import { emptyMetrics, type Handoff, type Task } from "@longshot/contracts";

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
 * The summary of an attempt the caller aborted: `sandbox aborted by the dispatcher`, followed by the signal's
 * reason when the caller gave one (an Error other than the default AbortError, e.g. the monitor's stuck report),
 * so the planner's retry and the history say why.
 */
export function abortReason(reason: unknown): string {
  const base = "sandbox aborted by the dispatcher";
  if (!(reason instanceof Error) || reason.name === "AbortError" || !reason.message) return base;
  return `${base}: ${reason.message}`;
}
