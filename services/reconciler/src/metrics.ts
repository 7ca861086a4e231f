import { Counter, Histogram, llmCallMetrics, type Registry, SECONDS_BUCKETS } from "@longshot/metrics";
import type { Sweeper } from "./adapters/sweep.ts";

/**
 * The reconciler's Prometheus metrics, registered on `registry`:
 * - `longshot_reconciler_sweeps_total{result="green"|"red"}`: sweeps of a base branch by result;
 * - `longshot_reconciler_sweep_duration_seconds`: whole sweeps;
 * - `longshot_reconciler_check_duration_seconds{check, result="pass"|"fail"}`: each check of a sweep (install,
 *   build, typecheck, test, conflict-markers);
 * - the model-call metrics `longshot_llm_*` (fix-task proposals).
 * `sweeper` decorates the sweep function; `llmCall` is the chat client's observer.
 */
export function reconcilerMetrics(registry: Registry) {
  const r = [registry];
  const sweeps = new Counter({
    name: "longshot_reconciler_sweeps_total",
    help: "Sweeps of a base branch, by result (green: every check passed).",
    labelNames: ["result"] as const,
    registers: r,
  });
  const duration = new Histogram({
    name: "longshot_reconciler_sweep_duration_seconds",
    help: "Whole sweeps of a base branch (every check, in a sandbox).",
    buckets: SECONDS_BUCKETS,
    registers: r,
  });
  const checks = new Histogram({
    name: "longshot_reconciler_check_duration_seconds",
    help: "Checks of a sweep, by check and result.",
    labelNames: ["check", "result"] as const,
    buckets: SECONDS_BUCKETS,
    registers: r,
  });
  sweeps.inc({ result: "green" }, 0);
  sweeps.inc({ result: "red" }, 0);
  duration.zero({});
  return {
    sweeper(sweep: Sweeper): Sweeper {
      return async (repo, baseBranch, at) => {
        const res = await sweep(repo, baseBranch, at);
        sweeps.inc({ result: res.green ? "green" : "red" });
        duration.observe(res.durationMs / 1000);
        for (const c of res.checks)
          checks.observe({ check: c.name, result: c.ok ? "pass" : "fail" }, c.durationMs / 1000);
        return res;
      };
    },
    llmCall: llmCallMetrics(registry),
  };
}
