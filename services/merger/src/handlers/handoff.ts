import { type Bus, type HandlerContext, RetryableError } from "@longshot/bus";
import type { Envelope, Handoff } from "@longshot/contracts";
import type { Logger } from "@longshot/log";
import {
  InFlightError,
  type MergeOutcome,
  type MergeQueue,
  SupersededError,
  type VerifiedCandidate,
} from "../adapters/merge-queue.ts";

/**
 * Publishes `merge.verified` for a candidate whose tree passed the checks (id per task attempt and tree, so a
 * repeat is dropped by JetStream). Failures are logged: the event is informational.
 */
export function createVerifiedPublisher(bus: Bus, log: Pick<Logger, "warn">) {
  return (h: Handoff, v: VerifiedCandidate): void => {
    void bus
      .publishEvent(
        "merge.verified",
        h.runId,
        {
          taskId: h.taskId,
          attempt: h.task.attempt,
          branch: h.branch,
          commit: v.commit,
          tree: v.tree,
          position: v.position,
          stackSize: v.stackSize,
          durationMs: v.durationMs,
          cached: v.cached,
        },
        {
          taskId: h.taskId,
          id: `merge-verified-${h.runId}-${h.taskId}-${h.task.attempt}-${v.tree.slice(0, 12)}`,
        },
      )
      .catch((err: unknown) => log.warn({ err, taskId: h.taskId }, "merge.verified not published"));
  };
}

/** One line for people and planners: the failing check, its command and exit code, and the output's tail. */
export function rejectionReason(o: Extract<MergeOutcome, { kind: "rejected" }>): string {
  const c = o.check;
  const tail = c.output.trim().split("\n").slice(-20).join("\n").slice(-1500);
  return `check ${c.name} failed on the base with this branch applied (\`${c.command}\`, exit ${c.exitCode ?? "killed"}): ${tail}`;
}

/**
 * The id of the outcome event of handoff message `env`: one per handoff message (`merge-<run>-<task>-<attempt>`
 * for the dispatcher's `handoff-<run>-<task>-<attempt>`), so a redelivery's announcement is dropped by
 * JetStream's duplicate window while the planner's re-submission of a failed merge (its own message id, suffix
 * `-remerge`) gets an outcome of its own instead of being dropped as a duplicate of the first one.
 */
export function outcomeEventId(env: Pick<Envelope<Handoff>, "id" | "data">): string {
  const h = env.data;
  return env.id.startsWith("handoff-")
    ? `merge-${env.id.slice("handoff-".length)}`
    : `merge-${h.runId}-${h.taskId}-${h.task.attempt}-${env.id}`;
}

/**
 * The merge queue's message handler. Every handoff is submitted to the queue (adapters/merge-queue.ts), which
 * stacks, verifies and lands candidates per base branch in priority order; the handler waits (held in progress
 * by `working()` heartbeats) until its candidate was decided, publishes the outcome event, and returns so the
 * message is acked. A redelivery of a waiting handoff replaces it (the older delivery returns quietly); one
 * whose candidate is in the stack right now, and transient failures (git, push refused, verification that could
 * not run, a base that keeps moving), are retried by redelivery (RetryableError, 5 s). On the consumer's last
 * delivery a transient failure becomes a `merge.failed` event (the planner re-submits failed merges when the
 * run's tasks are done), so no handoff ends without an outcome its run waits for; a candidate still in the stack
 * then is answered by the delivery that holds it.
 */
export function createHandoffHandler(deps: { bus: Bus; queue: MergeQueue }) {
  return async (env: Envelope<Handoff>, ctx: HandlerContext): Promise<void> => {
    const h = env.data;
    const meta = {
      taskId: h.taskId,
      causationId: env.id,
      correlationId: env.correlationId,
      id: outcomeEventId(env),
    };
    // parentId: a subtask's decomposition is found from the event by any subplanner instance.
    const base = {
      taskId: h.taskId,
      attempt: h.task.attempt,
      branch: h.branch,
      ...(h.task.parentId ? { parentId: h.task.parentId } : {}),
    };
    let outcome: MergeOutcome;
    try {
      const receivedAt = Date.parse(env.ts);
      outcome = await deps.queue.submit(h, Number.isFinite(receivedAt) ? { receivedAt } : {});
    } catch (err) {
      if (err instanceof SupersededError) return;
      if (err instanceof InFlightError) {
        if (ctx.lastDelivery) return;
        throw new RetryableError(err.message, { delayMs: 5000 });
      }
      const reason = `merge of ${h.taskId} failed transiently: ${(err as Error).message}`;
      if (!ctx.lastDelivery) throw new RetryableError(reason, { delayMs: 5000, cause: err });
      ctx.log.error({ err, runId: h.runId, taskId: h.taskId }, "merge retries exhausted, reported as failed");
      await deps.bus.publishEvent(
        "merge.failed",
        h.runId,
        { ...base, reason: `${reason} (gave up after ${ctx.deliveryCount} deliveries)` },
        { ...meta, id: `${meta.id}-exhausted` },
      );
      return;
    }
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
            verified: outcome.verified,
            tree: outcome.tree,
            batchSize: outcome.batchSize,
            ...(outcome.verifyMs !== undefined ? { verifyMs: outcome.verifyMs } : {}),
            handoffToLandingMs: outcome.waitedMs,
          },
          meta,
        );
        break;
      case "rejected":
        await deps.bus.publishEvent(
          "merge.rejected",
          h.runId,
          {
            ...base,
            commit: outcome.commit,
            tree: outcome.tree,
            reason: rejectionReason(outcome),
            check: outcome.check,
            checks: outcome.checks,
            durationMs: outcome.durationMs,
            stackSize: outcome.stackSize,
            bisectionDepth: outcome.bisectionDepth,
            handoffToRejectionMs: outcome.waitedMs,
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
