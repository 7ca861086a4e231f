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
 * The merge queue's message handler. Every handoff is submitted to the queue (adapters/merge-queue.ts), which
 * stacks, verifies and lands candidates per base branch in priority order; the handler waits (held in progress
 * by `working()` heartbeats) until its candidate was decided, publishes the outcome event, and returns so the
 * message is acked. A redelivery of a waiting handoff replaces it (the older delivery returns quietly); one
 * whose candidate is in the stack right now, and transient failures (git, push refused, verification that could
 * not run, a base that keeps moving), are retried by redelivery (RetryableError, 5 s).
 */
export function createHandoffHandler(deps: { bus: Bus; queue: MergeQueue }) {
  return async (env: Envelope<Handoff>, ctx: HandlerContext): Promise<void> => {
    const h = env.data;
    let outcome: MergeOutcome;
    try {
      const receivedAt = Date.parse(env.ts);
      outcome = await deps.queue.submit(h, Number.isFinite(receivedAt) ? { receivedAt } : {});
    } catch (err) {
      if (err instanceof SupersededError) return;
      if (err instanceof InFlightError) throw new RetryableError(err.message, { delayMs: 5000 });
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
    // parentId: a subtask's decomposition is found from the event by any subplanner instance.
    const base = {
      taskId: h.taskId,
      attempt: h.task.attempt,
      branch: h.branch,
      ...(h.task.parentId ? { parentId: h.task.parentId } : {}),
    };
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
