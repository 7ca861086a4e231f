import { TaskKind } from "@longshot/contracts";
import type { Registry } from "@longshot/metrics";
import { NATS_FAMILIES, type NatsFamilies } from "./adapters/nats-monitoring.ts";
import {
  countStuck,
  emptyHistogram,
  type Fleet,
  type HistogramData,
  MERGE_OUTCOMES,
  observe,
  RUN_STATUSES,
  redSeconds,
  TASK_PHASES,
  TOOL_CALL_BUCKETS,
} from "./domain/fleet.ts";
import { histogramSamples, registerSnapshot, type Sample } from "./snapshot.ts";

/** What the monitor's families read at scrape time. */
export interface MonitorMetricsSource {
  fleet: Fleet;
  /** False while the streams are being replayed: the fleet families stay empty rather than show partial sums. */
  ready(): boolean;
  stuckAfterMs: number;
  now?: () => number;
  /** NATS server metrics (`/varz`, `/jsz`), when monitoring URLs are configured. */
  nats?: () => Promise<NatsFamilies>;
}

/**
 * Registers the fleet's figures on `registry`, computed from the fold on every scrape (a restarted monitor
 * exports what it recomputed from the streams; nothing is incremented twice):
 * - `longshot_tasks{run, state}` — tasks by phase (planned, decomposed, running, handed_off, merged, …);
 * - `longshot_runs{status}` — runs by status (active, green, red, cancelled);
 * - `longshot_tasks_planned_total{run, kind}` — task attempts planned by kind (plan, subtask, fix, conflict-fix,
 *   retry): fix and conflict-fix tasks;
 * - `longshot_merges_total{run, outcome}` — merge queue verdicts (merged, conflict, rejected, skipped, failed):
 *   merged commits per hour, merge success and conflict rates;
 * - `longshot_plan_to_merge_seconds` — from a task's first plan to its merge;
 * - `longshot_sandbox_duration_seconds{status}` — sandbox runs by handoff status (`task.finished`);
 * - `longshot_run_main_green{run}` (1 green, 0 red, after the first sweep) and
 *   `longshot_run_main_red_seconds_total{run}` — time the run's base branch spent red;
 * - `longshot_tasks_stuck` — running attempts idle for STUCK_AFTER_MS now; `longshot_task_stuck_reports_total{run}`;
 * - `longshot_alerts_total{run, kind}` — alerts raised (e.g. `empty-diff-complete`);
 * - `longshot_run_llm_tokens_total{run, role}`, `longshot_run_llm_cost_dollars_total{run, role}` — the LLM
 *   gateway's usage records (roles: planner, subplanner, reconciler, worker, …);
 * - `longshot_attempts_total{model, harness, status}` — finished attempts by model, harness and handoff status, and
 *   `longshot_attempt_tool_calls{harness}` — tool calls per attempt, from the attempt history (`longshot-attempts`,
 *   kept 7 days: these count what the bucket holds);
 * - `longshot_monitor_inputs_applied_total` — events and handoffs folded (distinct ids);
 * - with `nats`: `gnatsd_varz_*` and `jetstream_*` (see `nats-monitoring.ts`).
 */
export function registerMonitorMetrics(registry: Registry, src: MonitorMetricsSource): void {
  const now = src.now ?? Date.now;
  const { fleet } = src;
  const when = (f: () => Sample[]) => () => (src.ready() ? f() : []);
  const perRun = <T>(f: (runId: string) => T[]) => [...fleet.runs.keys()].flatMap(f);

  registerSnapshot(registry, {
    name: "longshot_tasks",
    help: "Tasks by state (the latest attempt of each task), per run.",
    type: "gauge",
    samples: when(() =>
      perRun((run) => {
        const p = fleet.phases(run);
        return TASK_PHASES.map((state) => ({ labels: { run, state }, value: p.get(state) ?? 0 }));
      }),
    ),
  });
  registerSnapshot(registry, {
    name: "longshot_runs",
    help: "Runs by status.",
    type: "gauge",
    samples: when(() =>
      RUN_STATUSES.map((status) => ({
        labels: { status },
        value: [...fleet.runs.values()].filter((r) => r.status === status).length,
      })),
    ),
  });
  registerSnapshot(registry, {
    name: "longshot_tasks_planned_total",
    help: "Task attempts planned, by task kind (plan, subtask, fix, conflict-fix, retry), per run.",
    type: "counter",
    samples: when(() =>
      perRun((run) => {
        // Every kind has a series (0 until one is planned), so rates and dashboards see zeros, not gaps.
        const planned = fleet.countersOf(run).planned;
        return TaskKind.options.map((kind) => ({ labels: { run, kind }, value: planned[kind] ?? 0 }));
      }),
    ),
  });
  registerSnapshot(registry, {
    name: "longshot_merges_total",
    help: "Merge queue verdicts (merged, conflict, rejected, skipped, failed), per run.",
    type: "counter",
    samples: when(() =>
      perRun((run) => {
        const m = fleet.countersOf(run).merges;
        return MERGE_OUTCOMES.map((outcome) => ({ labels: { run, outcome }, value: m[outcome] }));
      }),
    ),
  });
  registerSnapshot(registry, {
    name: "longshot_plan_to_merge_seconds",
    help: "Time from a task's first plan to its merge on the base branch.",
    type: "histogram",
    samples: when(() => histogramSamples(fleet.planToMerge)),
  });
  registerSnapshot(registry, {
    name: "longshot_sandbox_duration_seconds",
    help: "Sandbox runs (task.finished), by handoff status.",
    type: "histogram",
    samples: when(() => [...fleet.sandboxRuns].flatMap(([status, h]) => histogramSamples(h, { status }))),
  });
  registerSnapshot(registry, {
    name: "longshot_run_main_green",
    help: "Health of the run's base branch by its last sweep: 1 green, 0 red (absent before the first sweep).",
    type: "gauge",
    samples: when(() =>
      [...fleet.runs.values()]
        .filter((r) => r.health !== "unknown")
        .map((r) => ({ labels: { run: r.runId }, value: r.health === "green" ? 1 : 0 })),
    ),
  });
  registerSnapshot(registry, {
    name: "longshot_run_main_red_seconds_total",
    help: "Time the run's base branch spent red (from a red sweep to the next green one, or the run's end).",
    type: "counter",
    samples: when(() => {
      const t = now();
      return [...fleet.runs.values()].map((r) => ({ labels: { run: r.runId }, value: redSeconds(r, t) }));
    }),
  });
  registerSnapshot(registry, {
    name: "longshot_tasks_stuck",
    help: "Running task attempts without progress for at least STUCK_AFTER_MS.",
    type: "gauge",
    samples: when(() => [{ value: countStuck(fleet, now(), src.stuckAfterMs) }]),
  });
  registerSnapshot(registry, {
    name: "longshot_task_stuck_reports_total",
    help: "task.stuck reports, per run.",
    type: "counter",
    samples: when(() => perRun((run) => [{ labels: { run }, value: fleet.countersOf(run).stuckReports }])),
  });
  registerSnapshot(registry, {
    name: "longshot_alerts_total",
    help: "Alerts raised by the monitor, by kind, per run.",
    type: "counter",
    samples: when(() =>
      perRun((run) => {
        const a = fleet.countersOf(run).alerts;
        return [
          { labels: { run, kind: "empty-diff-complete" }, value: a["empty-diff-complete"] ?? 0 },
          ...Object.entries(a)
            .filter(([k]) => k !== "empty-diff-complete")
            .map(([kind, value]) => ({ labels: { run, kind }, value })),
        ];
      }),
    ),
  });
  registerSnapshot(registry, {
    name: "longshot_run_llm_tokens_total",
    help: "LLM tokens (prompt + completion) of the run by role, from the LLM gateway's usage records.",
    type: "counter",
    samples: when(() =>
      [...fleet.usage.values()].flatMap((u) =>
        Object.entries(u.byRole).map(([role, t]) => ({
          labels: { run: u.runId, role },
          value: t.totalTokens,
        })),
      ),
    ),
  });
  registerSnapshot(registry, {
    name: "longshot_run_llm_cost_dollars_total",
    help: "LLM cost of the run by role in US dollars (the gateway's GATEWAY_PRICES), from its usage records.",
    type: "counter",
    samples: when(() =>
      [...fleet.usage.values()].flatMap((u) =>
        Object.entries(u.byRole).map(([role, t]) => ({ labels: { run: u.runId, role }, value: t.cost })),
      ),
    ),
  });
  registerSnapshot(registry, {
    name: "longshot_attempts_total",
    help: "Finished task attempts in the attempt history, by model, harness and handoff status.",
    type: "counter",
    samples: when(() => {
      const counts = new Map<string, { labels: Record<string, string>; value: number }>();
      for (const a of fleet.attempts.values()) {
        const k = `${a.model}\0${a.harness}\0${a.status}`;
        const c = counts.get(k) ?? {
          labels: { model: a.model, harness: a.harness, status: a.status },
          value: 0,
        };
        c.value++;
        counts.set(k, c);
      }
      return [...counts.values()];
    }),
  });
  registerSnapshot(registry, {
    name: "longshot_attempt_tool_calls",
    help: "Tool calls per finished task attempt, by harness (the attempt history).",
    type: "histogram",
    samples: when(() => {
      const byHarness = new Map<string, HistogramData>();
      for (const a of fleet.attempts.values())
        byHarness.set(
          a.harness,
          observe(byHarness.get(a.harness) ?? emptyHistogram(TOOL_CALL_BUCKETS), a.toolCalls),
        );
      return [...byHarness].flatMap(([harness, h]) => histogramSamples(h, { harness }));
    }),
  });
  registerSnapshot(registry, {
    name: "longshot_monitor_inputs_applied_total",
    help: "Events and handoffs folded into the monitor's figures (distinct message ids).",
    type: "counter",
    samples: when(() => [{ value: fleet.applied }]),
  });

  const nats = src.nats;
  if (nats) {
    // One read of /varz and /jsz per scrape, shared by every NATS family.
    let pending: Promise<NatsFamilies> | undefined;
    const read = () => {
      pending ??= nats().finally(() => setTimeout(() => (pending = undefined), 500));
      return pending;
    };
    for (const [name, help] of Object.entries(NATS_FAMILIES))
      registerSnapshot(registry, {
        name,
        help,
        type: "gauge",
        samples: async () => (await read()).get(name) ?? [],
      });
  }
}
