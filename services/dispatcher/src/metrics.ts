import type { HandoffStatus } from "@longshot/contracts";
import { Counter, Gauge, Histogram, type Registry, SECONDS_BUCKETS } from "@longshot/metrics";

/** The dispatcher's Prometheus metrics; the task handler reports into it (all durations in ms here, s exported). */
export interface DispatcherMetrics {
  /** A task got its slot (and scope leases) after waiting `waitMs` since its message was taken. */
  admitted(waitMs: number): void;
  /** The sandbox of a task sent its first line `startMs` after it was asked to start. */
  sandboxStarted(startMs: number): void;
  /** A sandbox finished after `runMs` with the handoff `status`; `timedOut` when WORKER_TIMEOUT killed it. */
  sandboxFinished(runMs: number, status: HandoffStatus, timedOut: boolean): void;
}

/**
 * Registers on `registry`:
 * - `longshot_dispatcher_slots` (MAX_WORKERS) and `longshot_dispatcher_slots_used` (sandboxes running),
 * - `longshot_dispatcher_tasks_waiting` (tasks held for a slot or a scope),
 * - `longshot_dispatcher_admission_wait_seconds` (from taking the task to its slot),
 * - `longshot_dispatcher_sandbox_start_seconds` (from asking the provider to the sandbox's first line),
 * - `longshot_dispatcher_sandbox_run_seconds{status}` (the whole sandbox run, by handoff status),
 * - `longshot_dispatcher_sandbox_timeouts_total` (runs killed at WORKER_TIMEOUT).
 * The gauges are read from `scheduler` at scrape time.
 */
export function dispatcherMetrics(
  registry: Registry,
  scheduler: { readonly active: number; readonly waiting: number },
  slots: number,
): DispatcherMetrics {
  const r = [registry];
  new Gauge({
    name: "longshot_dispatcher_slots",
    help: "Sandbox slots of this dispatcher (MAX_WORKERS).",
    registers: r,
  }).set(slots);
  new Gauge({
    name: "longshot_dispatcher_slots_used",
    help: "Slots in use: tasks whose sandbox is starting or running.",
    registers: r,
    collect() {
      this.set(scheduler.active);
    },
  });
  new Gauge({
    name: "longshot_dispatcher_tasks_waiting",
    help: "Tasks taken from the TASKS stream and waiting for a slot (priority and scope admission).",
    registers: r,
    collect() {
      this.set(scheduler.waiting);
    },
  });
  const wait = new Histogram({
    name: "longshot_dispatcher_admission_wait_seconds",
    help: "Time from taking a task to its admission (a free slot, and scope leases where the policy needs them).",
    buckets: SECONDS_BUCKETS,
    registers: r,
  });
  const start = new Histogram({
    name: "longshot_dispatcher_sandbox_start_seconds",
    help: "Time from asking the sandbox provider for a sandbox to the worker's first line from it.",
    buckets: SECONDS_BUCKETS,
    registers: r,
  });
  const run = new Histogram({
    name: "longshot_dispatcher_sandbox_run_seconds",
    help: "Whole sandbox runs (start to handoff), by handoff status.",
    labelNames: ["status"] as const,
    buckets: SECONDS_BUCKETS,
    registers: r,
  });
  const timeouts = new Counter({
    name: "longshot_dispatcher_sandbox_timeouts_total",
    help: "Sandbox runs killed at WORKER_TIMEOUT.",
    registers: r,
  });
  wait.zero({});
  start.zero({});
  for (const status of ["complete", "partial", "blocked", "failed"] as const) run.zero({ status });
  return {
    admitted: (ms) => wait.observe(ms / 1000),
    sandboxStarted: (ms) => start.observe(ms / 1000),
    sandboxFinished: (ms, status, timedOut) => {
      run.observe({ status }, ms / 1000);
      if (timedOut) timeouts.inc();
    },
  };
}
