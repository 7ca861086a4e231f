import type { Bus, HandlerContext } from "@longshot/bus";
import { type Envelope, HandoffMessage, type Task } from "@longshot/contracts";
import type { SandboxLlm, SandboxProvider } from "@longshot/sandbox";
import type { TokenIssuer } from "../adapters/gateway-tokens.ts";
import type { Scheduler } from "../domain/scheduler.ts";

/** Dependencies of the task handler. `timeoutMs`: WORKER_TIMEOUT in ms. */
export interface TaskHandlerDeps {
  bus: Bus;
  provider: SandboxProvider;
  scheduler: Scheduler;
  llm: SandboxLlm;
  /** When set, each sandbox gets its own gateway token instead of `llm.apiKey`. */
  tokens?: TokenIssuer;
  timeoutMs: number;
  /** Minimum ms between two progress events of one task (tool-call bursts are coalesced). */
  progressIntervalMs?: number;
}

/**
 * Runs one task in a sandbox: waits for admission (MAX_WORKERS slots, priority ordered, scope policy), publishes `task.started`, streams
 * progress as `task.progress`, publishes the handoff (dedup id `handoff-<runId>-<taskId>-<attempt>`) and
 * `task.finished`. The message is held in progress by the consume wrapper's `working()` heartbeats while
 * it waits and runs. The provider never rejects for task-level failures (they become `failed` handoffs).
 */
export function createTaskHandler(deps: TaskHandlerDeps) {
  const interval = deps.progressIntervalMs ?? 500;
  return async (env: Envelope<Task>, ctx: HandlerContext): Promise<void> => {
    const task = env.data;
    const meta = { taskId: task.id, causationId: env.id, correlationId: env.correlationId };
    const release = await deps.scheduler.acquire(task);
    try {
      const log = ctx.log.child({ runId: task.runId, taskId: task.id, attempt: task.attempt });
      log.info({ priority: task.priority, active: deps.scheduler.active }, "sandbox starting");
      await deps.bus.publishEvent(
        "task.started",
        task.runId,
        { taskId: task.id, branch: task.branch, sandbox: deps.provider.name },
        meta,
      );
      let lastProgress = 0;
      const token = deps.tokens ? await deps.tokens.issue(task) : undefined;
      const result = await deps.provider.run(task, {
        timeoutMs: deps.timeoutMs,
        llm: token ? { ...deps.llm, apiKey: token } : deps.llm,
        onLine: (line) => {
          if (line.kind !== "progress") return;
          const now = Date.now();
          if (now - lastProgress < interval) return;
          lastProgress = now;
          void deps.bus
            .publishEvent(
              "task.progress",
              task.runId,
              {
                taskId: task.id,
                message: line.message,
                ...(line.toolCalls !== undefined ? { toolCalls: line.toolCalls } : {}),
                ...(line.tokens !== undefined ? { tokens: line.tokens } : {}),
              },
              meta,
            )
            .catch((err) => log.warn({ err }, "progress event not published"));
        },
      });
      if (token) await deps.tokens!.revoke(token);
      const h = result.handoff;
      await deps.bus.publish(HandoffMessage, [task.runId], h, {
        ...meta,
        runId: task.runId,
        id: `handoff-${task.runId}-${task.id}-${task.attempt}`,
      });
      await deps.bus.publishEvent(
        "task.finished",
        task.runId,
        {
          taskId: task.id,
          status: h.status,
          summary: h.summary.slice(0, 500),
          durationMs: h.metrics.durationMs,
          tokensUsed: h.metrics.tokensUsed,
        },
        { ...meta, id: `finished-${task.runId}-${task.id}-${task.attempt}` },
      );
      log.info(
        { status: h.status, timedOut: result.timedOut, files: h.filesChanged.length },
        "sandbox finished",
      );
    } finally {
      release();
    }
  };
}
