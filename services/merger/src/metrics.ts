import type { Envelope, Handoff } from "@longshot/contracts";
import { Counter, Gauge, Histogram, type Registry, SECONDS_BUCKETS } from "@longshot/metrics";
import type { MergeOutcome, MergeQueue } from "./adapters/merge-queue.ts";

/** Outcome label of a merge: the outcome kind in snake case, or `error` for a transient failure (redelivered). */
const outcomeLabel = (o: MergeOutcome | undefined) => (o ? o.kind.replace("-", "_") : "error");

/**
 * The merge queue's Prometheus metrics, registered on `registry`:
 * - `longshot_merger_merge_duration_seconds{outcome}`: from a handoff's arrival in the queue to its decision, by
 *   outcome (`merged`, `rejected`, `conflict`, `skipped`, `already_merged`, `failed`, `error` = a transient
 *   failure, redelivered); its `_count` is the merges per outcome, so conflicts are `…_count{outcome="conflict"}`;
 * - `longshot_merger_merge_attempts_total`: candidate builds spent (conflict retries and rebuilds after a moved
 *   base included);
 * - `longshot_merger_rebases_total`: merges that landed rebased onto a base that had moved;
 * - `longshot_merger_queue_length`: handoffs held by the merge queue (waiting, verifying or landing).
 * Returns decorators for the queue and the handoff handler, so neither knows about metrics.
 */
export function mergerMetrics(registry: Registry) {
  const r = [registry];
  const duration = new Histogram({
    name: "longshot_merger_merge_duration_seconds",
    help: "Handoffs through the merge queue, arrival to decision, by outcome (the _count is the merges per outcome).",
    labelNames: ["outcome"] as const,
    buckets: SECONDS_BUCKETS,
    registers: r,
  });
  const attempts = new Counter({
    name: "longshot_merger_merge_attempts_total",
    help: "Candidate builds spent (conflict retries and rebuilds on a moved base included).",
    registers: r,
  });
  const rebases = new Counter({
    name: "longshot_merger_rebases_total",
    help: "Merges that landed rebased onto a base branch that had moved.",
    registers: r,
  });
  const queue = new Gauge({
    name: "longshot_merger_queue_length",
    help: "Handoffs held by the merge queue: waiting for their turn, verifying or landing.",
    registers: r,
  });
  for (const outcome of ["merged", "rejected", "conflict", "skipped", "already_merged", "failed", "error"])
    duration.zero({ outcome });
  attempts.inc(0);
  rebases.inc(0);
  return {
    /** `q` with every submitted handoff timed and counted. */
    queue(q: MergeQueue): MergeQueue {
      return {
        workDirFor: (repo) => q.workDirFor(repo),
        stats: () => q.stats(),
        submit: async (h: Handoff, opts) => {
          const end = duration.startTimer();
          let o: MergeOutcome | undefined;
          try {
            o = await q.submit(h, opts);
            return o;
          } finally {
            end({ outcome: outcomeLabel(o) });
            if (o?.kind === "merged" || o?.kind === "conflict") attempts.inc(o.attempts);
            if (o?.kind === "merged" && o.rebased) rebases.inc();
          }
        },
      };
    },
    /** `handler` with the handoffs it holds counted as the queue length. */
    handler<C>(handler: (env: Envelope<Handoff>, ctx: C) => Promise<void>) {
      return async (env: Envelope<Handoff>, ctx: C) => {
        queue.inc();
        try {
          await handler(env, ctx);
        } finally {
          queue.dec();
        }
      };
    },
  };
}
