import { type Bus, type HandlerContext, RetryableError } from "@longshot/bus";
import type { Envelope, Handoff } from "@longshot/contracts";
import type { MergeOutcome, MergeRunner } from "../adapters/merge-runner.ts";
import { emptyQueue, enqueue, finish, type MergeQueue, startAllReady } from "../domain/queue.ts";

interface Waiter {
  done(outcome: MergeOutcome): void;
  fail(err: unknown): void;
}

/** The previous delivery of a handoff was replaced by a redelivery of the same task while it waited. */
class SupersededError extends Error {
  override readonly name = "SupersededError";
}

/**
 * The merge queue's message handler. Every handoff joins one in-process priority queue (1 first, then
 * arrival), which runs at most one merge per target repository at a time; the handler waits (held in
 * progress by `working()` heartbeats) until its merge ended, publishes the outcome event, and returns so
 * the message is acked. Transient git failures are retried by redelivery (RetryableError, 5 s).
 */
export function createHandoffHandler(deps: { bus: Bus; runner: MergeRunner }) {
  let queue: MergeQueue<Waiter> = emptyQueue();
  const pump = () => {
    const { queue: next, entries } = startAllReady(queue);
    queue = next;
    for (const e of entries) {
      deps.runner
        .merge(e.handoff)
        .then(
          (o) => e.payload.done(o),
          (err) => e.payload.fail(err),
        )
        .finally(() => {
          queue = finish(queue, e.key);
          pump();
        });
    }
  };

  return async (env: Envelope<Handoff>, ctx: HandlerContext): Promise<void> => {
    const h = env.data;
    let outcome: MergeOutcome;
    try {
      outcome = await new Promise<MergeOutcome>((resolve, reject) => {
        const previous = queue.pending.find(
          (p) => p.handoff.runId === h.runId && p.handoff.taskId === h.taskId,
        );
        const r = enqueue(queue, h, { done: resolve, fail: reject });
        if (r.status === "in-flight") {
          reject(new RetryableError(`task ${h.taskId} is being merged right now`, { delayMs: 5000 }));
          return;
        }
        if (r.status === "replaced")
          previous?.payload.fail(new SupersededError("superseded by a redelivery"));
        queue = r.queue;
        pump();
      });
    } catch (err) {
      if (err instanceof SupersededError) return;
      if (err instanceof RetryableError) throw err;
      throw new RetryableError(`merge of ${h.taskId} failed transiently: ${(err as Error).message}`, {
        delayMs: 5000,
        cause: err,
      });
    }
    const meta = {
      taskId: h.taskId,
      causationId: env.id,
      correlationId: env.correlationId,
      id: `merge-${h.runId}-${h.taskId}-${h.task.attempt}`,
    };
    const base = { taskId: h.taskId, attempt: h.task.attempt, branch: h.branch };
    switch (outcome.kind) {
      case "merged":
        await deps.bus.publishEvent(
          "merge.merged",
          h.runId,
          {
            ...base,
            repo: h.task.repo,
            baseBranch: h.task.baseBranch,
            sha: outcome.sha,
            strategy: outcome.strategy,
            rebased: outcome.rebased,
            attempts: outcome.attempts,
          },
          meta,
        );
        break;
      case "conflict":
        await deps.bus.publishEvent(
          "merge.conflict",
          h.runId,
          { ...base, files: outcome.files, attempts: outcome.attempts },
          meta,
        );
        break;
      case "already-merged":
        // Re-announce under the same event id: JetStream drops it if the first announcement went out
        // (redelivery), and it fills the gap if the merger died between pushing and announcing.
        await deps.bus.publishEvent(
          "merge.merged",
          h.runId,
          {
            ...base,
            repo: h.task.repo,
            baseBranch: h.task.baseBranch,
            sha: outcome.sha,
            strategy: "none",
            rebased: false,
            attempts: 0,
          },
          meta,
        );
        break;
      case "skipped":
        await deps.bus.publishEvent("merge.skipped", h.runId, { ...base, reason: outcome.reason }, meta);
        break;
      case "failed":
        await deps.bus.publishEvent("merge.failed", h.runId, { ...base, reason: outcome.reason }, meta);
        break;
    }
    ctx.log.info({ runId: h.runId, taskId: h.taskId, outcome: outcome.kind }, "merge decided");
  };
}
