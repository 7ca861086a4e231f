import type { Bus, HandlerContext, ScopeLeases } from "@longshot/bus";
import {
  type Envelope,
  failedHandoff,
  type Handoff,
  HandoffMessage,
  type Task,
  type WorkerLine,
} from "@longshot/contracts";
import type { SandboxLlm, SandboxProvider } from "@longshot/sandbox";
import type { AttemptHistory } from "../adapters/attempt-history.ts";
import type { Cancellations } from "../adapters/cancellations.ts";
import type { TokenIssuer } from "../adapters/gateway-tokens.ts";
import type { StuckTasks } from "../adapters/stuck-tasks.ts";
import { type Transcripts, transcriptText } from "../adapters/transcripts.ts";
import { CompactTranscript } from "../domain/compact-transcript.ts";
import type { Scheduler } from "../domain/scheduler.ts";
import { createThrottle } from "../domain/throttle.ts";
import type { DispatcherMetrics } from "../metrics.ts";

/** Dependencies of the task handler. `timeoutMs`: WORKER_TIMEOUT in ms. */
export interface TaskHandlerDeps {
  bus: Bus;
  provider: SandboxProvider;
  scheduler: Scheduler;
  llm: SandboxLlm;
  /** When set, each sandbox gets its own gateway token instead of `llm.apiKey`. */
  tokens?: TokenIssuer;
  timeoutMs: number;
  /**
   * Minimum ms between two progress events of one task (tool-call bursts are coalesced; the last line of a burst
   * is sent when the interval ends).
   */
  progressIntervalMs?: number;
  /** Cancelled runs: their tasks are not started, their running sandboxes are terminated. */
  cancellations?: Pick<Cancellations, "isCancelled" | "signal">;
  /**
   * Scope leases shared by every dispatcher (NATS KV): under `SCOPE_POLICY=exclusive` (and for conflict-fix
   * tasks always) a task starts only once it holds a lease on every file of its scope; the leases outlive the
   * sandbox until the branch lands or is abandoned (released by the planner), or — when the attempt produced
   * nothing to merge — right after the handoff.
   */
  leases?: ScopeLeases;
  /** Longest wait for a lease change before trying again, ms (default 5000). */
  leaseRecheckMs?: number;
  /** Attempts the monitor reports stuck with `action: "retry"` get their sandbox stopped (a failed handoff). */
  stuck?: Pick<StuckTasks, "watch">;
  /** Admission waits, sandbox start and run times (Prometheus). */
  metrics?: DispatcherMetrics;
  /** Every worker line of an attempt, uncoalesced, in a file on this host. */
  transcripts?: Transcripts;
  /**
   * The attempt history on NATS: one record per finished attempt with its compact transcript, stored before the
   * handoff is published (`longshot history`, `longshot logs --task`). `harness` is WORKER_HARNESS.
   */
  history?: { store: AttemptHistory; harness: string };
}

/**
 * Runs one task in a sandbox: waits for admission (MAX_WORKERS slots, priority ordered, scope policy), publishes `task.started`, streams
 * progress as `task.progress`, publishes the handoff (dedup id `handoff-<runId>-<taskId>-<attempt>`) and
 * `task.finished`. The message is held in progress by the consume wrapper's `working()` heartbeats while
 * it waits and runs. The provider never rejects for task-level failures (they become `failed` handoffs).
 */
export function createTaskHandler(deps: TaskHandlerDeps) {
  /**
   * The handoff of an attempt (dedup id `handoff-<runId>-<taskId>-<attempt>`), then its `task.finished`. With
   * `again`, `task.finished` only when the handoff was new to JetStream (core subscribers of EVENTS would see a
   * repeat, which JetStream drops for the stream only). Resolves with whether the handoff was new.
   */
  async function publishOutcome(
    task: Task,
    h: Handoff,
    meta: { taskId: string; causationId: string; correlationId?: string | undefined },
    again = false,
  ): Promise<boolean> {
    const { ack } = await deps.bus.publish(HandoffMessage, [task.runId], h, {
      ...meta,
      runId: task.runId,
      id: `handoff-${task.runId}-${task.id}-${task.attempt}`,
    });
    if (again && ack.duplicate) return false;
    await deps.bus.publishEvent(
      "task.finished",
      task.runId,
      {
        taskId: task.id,
        attempt: task.attempt,
        status: h.status,
        summary: h.summary.slice(0, 500),
        durationMs: h.metrics.durationMs,
        tokensUsed: h.metrics.tokensUsed,
      },
      { ...meta, id: `finished-${task.runId}-${task.id}-${task.attempt}` },
    );
    return true;
  }

  const interval = deps.progressIntervalMs ?? 500;
  const runAttempt = async (env: Envelope<Task>, ctx: HandlerContext): Promise<void> => {
    const task = env.data;
    const taken = performance.now();
    const meta = { taskId: task.id, causationId: env.id, correlationId: env.correlationId };
    const log = ctx.log.child({ runId: task.runId, taskId: task.id, attempt: task.attempt });
    // Delivery is at least once: an attempt that already ran is not run again. Its handoff is published again
    // under its id, in case the first run ended before publishing it: JetStream drops it within its duplicate
    // window (then task.finished went out too), and after it the planner and the merger take a handoff twice
    // without harm.
    const ran = await deps.history?.store.finished({
      runId: task.runId,
      taskId: task.id,
      attempt: task.attempt,
    });
    if (ran) {
      const republished = await publishOutcome(task, ran.handoff, meta, true);
      log.info(
        { status: ran.handoff.status, republished },
        "attempt already ran: no sandbox, its recorded handoff stands",
      );
      return;
    }
    const leased =
      deps.leases !== undefined &&
      task.scope.length > 0 &&
      (deps.scheduler.policy === "exclusive" || task.kind === "conflict-fix");
    let release: () => void;
    for (;;) {
      release = await deps.scheduler.acquire(task);
      if (!leased) break;
      const lease = await deps.leases!.tryAcquire(task);
      if (lease.ok) break;
      // Another task's work on these files has not landed yet: give the slot back and wait for it.
      release();
      log.info({ heldBy: lease.heldBy.map((h) => `${h.taskId}:${h.file}`) }, "waiting for scope leases");
      await deps.leases!.waitForChange(task, lease.heldBy, deps.leaseRecheckMs ?? 5_000);
    }
    deps.metrics?.admitted(performance.now() - taken);
    try {
      if (await deps.cancellations?.isCancelled(task.runId)) {
        log.info("run cancelled: task not started");
        if (leased) await deps.leases!.release(task);
        return;
      }
      log.info({ priority: task.priority, active: deps.scheduler.active }, "sandbox starting");
      await deps.bus.publishEvent(
        "task.started",
        task.runId,
        { taskId: task.id, attempt: task.attempt, branch: task.branch, sandbox: deps.provider.name },
        meta,
      );
      // At most one progress event per interval, and never without the latest line (see createThrottle).
      const progress = createThrottle<Extract<WorkerLine, { kind: "progress" }>>(interval, (line) => {
        void deps.bus
          .publishEvent(
            "task.progress",
            task.runId,
            {
              taskId: task.id,
              attempt: task.attempt,
              message: line.message,
              ...(line.toolCalls !== undefined ? { toolCalls: line.toolCalls } : {}),
              ...(line.tokens !== undefined ? { tokens: line.tokens } : {}),
            },
            meta,
          )
          .catch((err) => log.warn({ err }, "progress event not published"));
      });
      const token = deps.tokens ? await deps.tokens.issue(task) : undefined;
      const stuck = deps.stuck?.watch(task);
      const signals = [deps.cancellations?.signal(task.runId), stuck?.signal].filter((x) => x !== undefined);
      const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
      const runStart = performance.now();
      let started = false;
      const startedAt = new Date();
      const compact = deps.history ? new CompactTranscript() : undefined;
      const result = await deps.provider.run(task, {
        ...(signal ? { signal } : {}),
        timeoutMs: deps.timeoutMs,
        llm: token ? { ...deps.llm, apiKey: token } : deps.llm,
        onLine: (line) => {
          if (!started) {
            started = true;
            deps.metrics?.sandboxStarted(performance.now() - runStart);
          }
          deps.transcripts?.append(task, line);
          if (compact) {
            const text = transcriptText(line);
            if (text !== undefined) compact.add(new Date(), text);
          }
          if (line.kind === "progress") progress.push(line);
        },
      });
      progress.cancel();
      stuck?.done();
      if (token) await deps.tokens!.revoke(token);
      const h = result.handoff;
      deps.metrics?.sandboxFinished(performance.now() - runStart, h.status, result.timedOut);
      // Nothing of this attempt can land: its files are free again (a retry takes them back).
      if (leased && h.head === undefined) await deps.leases!.release(task);
      // Before the handoff: whoever reacts to it (merge queue, planner, a person after the run) finds the record.
      if (deps.history && compact)
        await deps.history.store.record(
          {
            runId: task.runId,
            taskId: task.id,
            attempt: task.attempt,
            model: task.model ?? deps.llm.model,
            harness: deps.history.harness,
            sandbox: deps.provider.name,
            ...(result.sandboxId ? { sandboxId: result.sandboxId } : {}),
            startedAt: startedAt.toISOString(),
            finishedAt: new Date().toISOString(),
            timedOut: result.timedOut,
            handoff: h,
          },
          compact.result(),
        );
      await publishOutcome(task, h, meta);
      log.info(
        { status: h.status, timedOut: result.timedOut, files: h.filesChanged.length },
        "sandbox finished",
      );
    } finally {
      release();
    }
  };

  /**
   * On the consumer's last delivery a failure of dispatch itself (the gateway could not issue a token, the
   * sandbox could not be created, NATS refused a write) becomes a `failed` handoff and `task.finished`, so the
   * planner retries the task or gives up on it instead of waiting for an attempt that will never run.
   */
  return async (env: Envelope<Task>, ctx: HandlerContext): Promise<void> => {
    try {
      await runAttempt(env, ctx);
    } catch (err) {
      if (!ctx.lastDelivery) throw err;
      const task = env.data;
      const reason = `dispatch gave up after ${ctx.deliveryCount} deliveries: ${(err as Error).message}`;
      ctx.log.error({ err, runId: task.runId, taskId: task.id, attempt: task.attempt }, "dispatch gave up");
      // `again`: when an earlier delivery's handoff went out after all, it stands and nothing more is said.
      await publishOutcome(
        task,
        failedHandoff(task, reason, 0),
        { taskId: task.id, causationId: env.id, correlationId: env.correlationId },
        true,
      );
    }
  };
}
