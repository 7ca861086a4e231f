import type { Bus } from "@longshot/bus";
import { Buckets } from "@longshot/contracts";
import type { Logger } from "@longshot/log";

/** Which runs were cancelled, and an abort signal per run that fires when one is. */
export interface Cancellations {
  /** True when `runId` was cancelled (reads the `longshot-cancelled` bucket, so a restart does not forget). */
  isCancelled(runId: string): Promise<boolean>;
  /** Aborts when `runId` is cancelled (at once if it already was). */
  signal(runId: string): AbortSignal;
  stop(): void;
}

/**
 * Cancellations from the `longshot-cancelled` KV bucket (written by the planner on `longshot.cancel`): a watch
 * aborts the signals of runs cancelled while their sandboxes run; `isCancelled` is a direct read, so a task
 * redelivered after a restart is not started for a cancelled run.
 */
export async function watchCancellations(bus: Bus, log: Logger): Promise<Cancellations> {
  const kv = await bus.kv(Buckets.cancelled);
  const controllers = new Map<string, AbortController>();
  const cancelled = new Set<string>();
  const cancel = (runId: string) => {
    if (cancelled.has(runId)) return;
    cancelled.add(runId);
    const c = controllers.get(runId);
    if (c && !c.signal.aborted) {
      log.warn({ runId }, "run cancelled: stopping its sandboxes");
      c.abort();
    }
  };
  const watch = await kv.watch();
  void (async () => {
    for await (const e of watch) if (e.operation === "PUT") cancel(e.key);
  })().catch((err: unknown) => log.warn({ err }, "cancellation watch ended"));
  return {
    async isCancelled(runId) {
      if (cancelled.has(runId)) return true;
      const e = await kv.get(runId);
      if (e?.operation === "PUT") cancel(runId);
      return cancelled.has(runId);
    },
    signal(runId) {
      let c = controllers.get(runId);
      if (!c) {
        c = new AbortController();
        if (cancelled.has(runId)) c.abort();
        controllers.set(runId, c);
      }
      return c.signal;
    },
    stop() {
      watch.stop();
    },
  };
}
