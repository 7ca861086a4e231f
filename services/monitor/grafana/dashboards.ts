/**
 * Longshot's Grafana dashboards, built with Grafana's foundation SDK (`@grafana/grafana-foundation-sdk`, whose
 * types are generated from Grafana's dashboard schema, so `tsc` checks every field): Fleet, Run, Model gateway
 * and NATS. `node services/monitor/grafana/dashboards.ts` writes them to `deploy/grafana/dashboards/*.json`, the
 * files Grafana provisions (deploy/grafana/provisioning) and `longshot up --observe` points at for import.
 * Every panel's query is proven to return data on a live Prometheus by services/cli/test/observe.int.test.ts.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as bargauge from "@grafana/grafana-foundation-sdk/bargauge";
import { ReduceDataOptionsBuilder } from "@grafana/grafana-foundation-sdk/common";
import {
  type Dashboard,
  DashboardBuilder,
  DatasourceVariableBuilder,
  type Panel,
  QueryVariableBuilder,
  RowBuilder,
  VariableRefresh,
} from "@grafana/grafana-foundation-sdk/dashboard";
import { DataqueryBuilder } from "@grafana/grafana-foundation-sdk/prometheus";
import * as stat from "@grafana/grafana-foundation-sdk/stat";
import * as statetimeline from "@grafana/grafana-foundation-sdk/statetimeline";
import * as timeseries from "@grafana/grafana-foundation-sdk/timeseries";

/** Grafana's reference to the dashboard variable `datasource` (a literal `${…}`, expanded by Grafana). */
export const DATASOURCE_VARIABLE = ["$", "{datasource}"].join("");

/** The datasource every panel queries: the dashboard's `datasource` variable (any Prometheus). */
const DS = { type: "prometheus", uid: DATASOURCE_VARIABLE };

/** A PromQL query with its legend; refIds are assigned A, B, … per panel. */
type Query = [expr: string, legend?: string];

type Kind = "timeseries" | "stat" | "bargauge" | "statetimeline";

/** One panel: its kind, title, unit, what it shows, and its queries. */
interface PanelSpec {
  kind?: Kind;
  title: string;
  description: string;
  unit?: string;
  queries: Query[];
  width?: number;
  stacked?: boolean;
}

function panel(p: PanelSpec) {
  const targets = p.queries.map(([expr, legend], i) =>
    new DataqueryBuilder()
      .expr(expr)
      .legendFormat(legend ?? "__auto")
      .refId(String.fromCharCode(65 + i))
      .datasource(DS),
  );
  const kind = p.kind ?? "timeseries";
  const b =
    kind === "stat"
      ? new stat.PanelBuilder()
      : kind === "bargauge"
        ? new bargauge.PanelBuilder()
        : kind === "statetimeline"
          ? new statetimeline.PanelBuilder()
          : new timeseries.PanelBuilder();
  b.title(p.title)
    .description(p.description)
    .datasource(DS)
    .targets(targets)
    .span(p.width ?? 12)
    .height(8);
  if (p.unit) b.unit(p.unit);
  if (b instanceof timeseries.PanelBuilder && p.stacked) b.fillOpacity(40);
  // Single-value panels show each series' last value.
  if (b instanceof stat.PanelBuilder || b instanceof bargauge.PanelBuilder)
    b.reduceOptions(new ReduceDataOptionsBuilder().calcs(["lastNotNull"]).values(false));
  return b;
}

function dashboard(uid: string, title: string, description: string, rows: [string, PanelSpec[]][]) {
  const d = new DashboardBuilder(title)
    .uid(uid)
    .description(description)
    .tags(["longshot"])
    .refresh("30s")
    .time({ from: "now-1h", to: "now" })
    .timezone("browser")
    .withVariable(new DatasourceVariableBuilder("datasource").label("Prometheus").type("prometheus"));
  return { d, rows };
}

function finish({ d, rows }: ReturnType<typeof dashboard>): Dashboard {
  for (const [title, panels] of rows) {
    d.withRow(new RowBuilder(title));
    for (const p of panels) d.withPanel(panel(p));
  }
  return d.build();
}

/** p50/p90/p99 queries of histogram `name` (seconds), grouped by `by` when given. */
function quantiles(name: string, by = "", extra = ""): Query[] {
  const group = by ? `le, ${by}` : "le";
  return [0.5, 0.9, 0.99].map((q) => [
    `histogram_quantile(${q}, sum by (${group}) (rate(${name}_bucket${extra}[$__rate_interval])))`,
    `p${Math.round(q * 100)}${by ? ` {{${by}}}` : ""}`,
  ]);
}

/** Fleet: throughput, merge rate, conflicts, active sandboxes, queue depth, main health, stuck tasks, services. */
export function fleetDashboard(): Dashboard {
  return finish(
    dashboard(
      "longshot-fleet",
      "Longshot / Fleet",
      "Every run of the fleet: throughput, merge queue, sandboxes, health of main, stuck tasks.",
      [
        [
          "Throughput",
          [
            {
              kind: "stat",
              title: "Merged commits per hour",
              description: "Tasks merged on their base branch in the last hour (longshot-monitor).",
              queries: [['sum(increase(longshot_merges_total{outcome="merged"}[1h]))', "merged / h"]],
              width: 6,
            },
            {
              kind: "stat",
              title: "Merge success rate",
              description: "Merged / every merge queue verdict, over the dashboard's range.",
              unit: "percentunit",
              queries: [
                [
                  'sum(increase(longshot_merges_total{outcome="merged"}[$__range])) / sum(increase(longshot_merges_total[$__range]))',
                  "success",
                ],
              ],
              width: 6,
            },
            {
              kind: "stat",
              title: "Conflict rate",
              description: "Conflicts / every merge queue verdict, over the dashboard's range.",
              unit: "percentunit",
              queries: [
                [
                  'sum(increase(longshot_merges_total{outcome="conflict"}[$__range])) / sum(increase(longshot_merges_total[$__range]))',
                  "conflicts",
                ],
              ],
              width: 6,
            },
            {
              kind: "stat",
              title: "Runs",
              description: "Runs by status.",
              queries: [["sum by (status) (longshot_runs)", "{{status}}"]],
              width: 6,
            },
            {
              title: "Merge queue verdicts per minute",
              description: "merged, conflict, rejected (failed verification), skipped, failed.",
              queries: [
                ["sum by (outcome) (rate(longshot_merges_total[$__rate_interval])) * 60", "{{outcome}}"],
              ],
            },
            {
              title: "Tasks by state",
              description: "The latest attempt of every task, all runs.",
              stacked: true,
              queries: [["sum by (state) (longshot_tasks)", "{{state}}"]],
            },
          ],
        ],
        [
          "Sandboxes and queues",
          [
            {
              title: "Active sandboxes",
              description: "Tasks whose sandbox runs (monitor) and dispatcher slots in use of MAX_WORKERS.",
              queries: [
                ['sum(longshot_tasks{state="running"})', "running tasks"],
                ["sum(longshot_dispatcher_slots_used)", "slots used"],
                ["sum(longshot_dispatcher_slots)", "slots"],
              ],
            },
            {
              title: "Queue depth",
              description:
                "Messages not yet delivered (NATS) to the dispatcher, subplanner and merge queue (max over replicas), and handoffs the merge queue holds.",
              queries: [
                [
                  'max by (consumer_name) (jetstream_consumer_num_pending{consumer_name=~"dispatcher|subplanner|merger"})',
                  "pending {{consumer_name}}",
                ],
                ["sum(longshot_merger_queue_length)", "merge queue"],
                ["sum(longshot_dispatcher_tasks_waiting)", "waiting for a slot"],
              ],
            },
            {
              title: "Sandbox run time",
              description: "Sandbox runs by handoff status (task.finished).",
              unit: "s",
              queries: quantiles("longshot_sandbox_duration_seconds", "status"),
            },
            {
              title: "Plan to merge",
              description: "From a task's first plan to its merge.",
              unit: "s",
              queries: quantiles("longshot_plan_to_merge_seconds"),
            },
          ],
        ],
        [
          "Health of main",
          [
            {
              kind: "statetimeline",
              title: "main health per run",
              description: "1 green, 0 red, by the reconciler's last sweep of each run's base branch.",
              queries: [["longshot_run_main_green", "{{run}}"]],
            },
            {
              title: "Time main spent red",
              description: "Per run: from a red sweep to the next green one (or the run's end).",
              unit: "s",
              queries: [["sum by (run) (longshot_run_main_red_seconds_total)", "{{run}}"]],
            },
            {
              title: "Stuck tasks and alerts",
              description:
                "Running attempts without progress for STUCK_AFTER_MS; task.stuck reports and alerts raised in the range.",
              queries: [
                ["sum(longshot_tasks_stuck)", "stuck now"],
                ["sum(increase(longshot_task_stuck_reports_total[$__range]))", "stuck reports"],
                ["sum by (kind) (increase(longshot_alerts_total[$__range]))", "alerts {{kind}}"],
              ],
            },
            {
              title: "Fix and conflict-fix tasks",
              description:
                "Task attempts planned by kind over the range: reconciler fixes, conflict-fixes, retries.",
              queries: [
                [
                  'sum by (kind) (increase(longshot_tasks_planned_total{kind=~"fix|conflict-fix|retry"}[$__range]))',
                  "{{kind}}",
                ],
              ],
            },
          ],
        ],
        [
          "Services",
          [
            {
              title: "Dispatcher: admission wait and sandbox start",
              description:
                "From taking a task to its slot; from asking the provider to the sandbox's first line.",
              unit: "s",
              queries: [
                [
                  "histogram_quantile(0.9, sum by (le) (rate(longshot_dispatcher_admission_wait_seconds_bucket[$__rate_interval])))",
                  "admission p90",
                ],
                [
                  "histogram_quantile(0.9, sum by (le) (rate(longshot_dispatcher_sandbox_start_seconds_bucket[$__rate_interval])))",
                  "sandbox start p90",
                ],
              ],
            },
            {
              title: "Merge queue: merge duration by outcome",
              description:
                "Handoff arrival to decision, p90 by outcome; rebases and candidate builds per minute.",
              unit: "s",
              queries: [
                ...quantiles("longshot_merger_merge_duration_seconds", "outcome").slice(1, 2),
                ["sum(rate(longshot_merger_rebases_total[$__rate_interval])) * 60", "rebases / min"],
                ["sum(rate(longshot_merger_merge_attempts_total[$__rate_interval])) * 60", "builds / min"],
              ],
            },
            {
              title: "Reconciler: sweeps and checks",
              description: "Sweeps by result in the range; p90 duration of each check.",
              queries: [
                [
                  "sum by (result) (increase(longshot_reconciler_sweeps_total[$__range]))",
                  "sweeps {{result}}",
                ],
                ...quantiles("longshot_reconciler_check_duration_seconds", "check").slice(1, 2),
              ],
            },
            {
              title: "Planner: iterations and model calls",
              description: "Planning iterations per minute; model-call latency p90 per service.",
              queries: [
                ["sum(rate(longshot_planner_iterations_total[$__rate_interval])) * 60", "iterations / min"],
                ...quantiles("longshot_llm_request_duration_seconds", "service").slice(1, 2),
              ],
            },
            {
              title: "CPU per service",
              description: "process_cpu_seconds_total rate by service (Node's default metrics).",
              queries: [
                ["sum by (service) (rate(process_cpu_seconds_total[$__rate_interval]))", "{{service}}"],
              ],
            },
            {
              title: "Memory per service",
              description: "Resident memory by service.",
              unit: "bytes",
              queries: [["sum by (service) (process_resident_memory_bytes)", "{{service}}"]],
            },
          ],
        ],
      ],
    ),
  );
}

/** Run: one run (variable `run`): tasks by state, timeline, merges, health, tokens and cost by role. */
export function runDashboard(): Dashboard {
  const { d, rows } = dashboard("longshot-run", "Longshot / Run", "One run, chosen with the run variable.", [
    [
      "Tasks",
      [
        {
          kind: "bargauge",
          title: "Tasks by state",
          description: "The latest attempt of each task of the run.",
          queries: [['sum by (state) (longshot_tasks{run="$run"})', "{{state}}"]],
        },
        {
          title: "Timeline",
          description: "Tasks by state over time.",
          stacked: true,
          queries: [['sum by (state) (longshot_tasks{run="$run"})', "{{state}}"]],
        },
        {
          kind: "bargauge",
          title: "Merge queue verdicts",
          description: "merged, conflict, rejected, skipped, failed.",
          queries: [['sum by (outcome) (longshot_merges_total{run="$run"})', "{{outcome}}"]],
        },
        {
          kind: "bargauge",
          title: "Task attempts by kind",
          description: "plan, subtask, fix, conflict-fix, retry.",
          queries: [['sum by (kind) (longshot_tasks_planned_total{run="$run"})', "{{kind}}"]],
        },
      ],
    ],
    [
      "Health and usage",
      [
        {
          kind: "statetimeline",
          title: "main health",
          description: "1 green, 0 red by the reconciler's sweeps.",
          queries: [['longshot_run_main_green{run="$run"}', "main"]],
        },
        {
          kind: "stat",
          title: "Time main spent red",
          description: "From a red sweep to the next green one.",
          unit: "s",
          queries: [['sum(longshot_run_main_red_seconds_total{run="$run"})', "red"]],
        },
        {
          title: "Tokens by role",
          description:
            "LLM tokens (prompt + completion) by role: planner, subplanner, reconciler, worker (the gateway's usage record).",
          queries: [['sum by (role) (longshot_run_llm_tokens_total{run="$run"})', "{{role}}"]],
        },
        {
          title: "Cost by role",
          description: "US dollars by role, from the gateway's price table (GATEWAY_PRICES).",
          unit: "currencyUSD",
          queries: [['sum by (role) (longshot_run_llm_cost_dollars_total{run="$run"})', "{{role}}"]],
        },
        {
          title: "Stuck reports and alerts",
          description: "task.stuck reports and alerts raised for the run.",
          queries: [
            ['sum(longshot_task_stuck_reports_total{run="$run"})', "stuck reports"],
            ['sum by (kind) (longshot_alerts_total{run="$run"})', "alerts {{kind}}"],
          ],
        },
      ],
    ],
  ]);
  d.withVariable(
    new QueryVariableBuilder("run")
      .label("Run")
      .datasource(DS)
      .query({ query: "label_values(longshot_tasks, run)", refId: "run" })
      .definition("label_values(longshot_tasks, run)")
      .refresh(VariableRefresh.OnTimeRangeChanged),
  );
  return finish({ d, rows });
}

/** Model gateway: requests/s, TTFT and latency percentiles, cache hit rate, replica health, breakers, tokens. */
export function gatewayDashboard(): Dashboard {
  return finish(
    dashboard(
      "longshot-gateway",
      "Longshot / Model gateway",
      "The LLM gateway in front of the model replicas.",
      [
        [
          "Traffic",
          [
            {
              title: "Requests per second",
              description: "Client requests answered, by HTTP status.",
              unit: "reqps",
              queries: [
                ["sum by (status) (rate(llm_gateway_requests_total[$__rate_interval]))", "{{status}}"],
              ],
            },
            {
              title: "Time to first token",
              description: "From the client request to the first byte sent back.",
              unit: "s",
              queries: quantiles("llm_gateway_ttft_seconds"),
            },
            {
              title: "Request latency",
              description: "Until the last byte.",
              unit: "s",
              queries: quantiles("llm_gateway_request_duration_seconds"),
            },
            {
              title: "Prefix-cache hit rate",
              description:
                "Cache-aware routing decisions that found the replica holding the prompt's prefix.",
              unit: "percentunit",
              queries: [
                [
                  'sum(increase(llm_gateway_policy_decisions_total{reason="cache_hit"}[$__range])) / sum(increase(llm_gateway_policy_decisions_total{reason=~"cache_hit|cache_miss|load_imbalance"}[$__range]))',
                  "hit rate",
                ],
              ],
            },
          ],
        ],
        [
          "Replicas",
          [
            {
              kind: "statetimeline",
              title: "Replica health",
              description: "1 when a replica passes the gateway's health checks.",
              queries: [["max by (upstream) (llm_gateway_upstream_healthy)", "{{upstream}}"]],
            },
            {
              kind: "statetimeline",
              title: "Circuit breaker state",
              description: "The state each replica's breaker is in.",
              queries: [
                [
                  "max by (upstream, state) (llm_gateway_circuit_breaker_state) == 1",
                  "{{upstream}} {{state}}",
                ],
              ],
            },
            {
              title: "Active requests and queue",
              description: "Requests in flight per replica; requests waiting for an admission slot.",
              queries: [
                ["sum by (upstream) (llm_gateway_active_requests)", "{{upstream}}"],
                ["sum(llm_gateway_queue_depth)", "queued"],
              ],
            },
            {
              title: "Tokens per second",
              description: "By type: uncached prompt, cached prompt, completion (they sum to the total).",
              queries: [["sum by (type) (rate(llm_gateway_tokens_total[$__rate_interval]))", "{{type}}"]],
            },
          ],
        ],
      ],
    ),
  );
}

/** NATS: pending, ack pending, redeliveries, slow consumers (the exporter's names). */
export function natsDashboard(): Dashboard {
  return finish(
    dashboard(
      "longshot-nats",
      "Longshot / NATS",
      "JetStream consumers and servers (prometheus-nats-exporter names; max over the replicas that report a stream or consumer).",
      [
        [
          "Consumers",
          [
            {
              title: "Pending",
              description: "Messages of the stream a consumer has not delivered yet.",
              queries: [
                [
                  "max by (stream_name, consumer_name) (jetstream_consumer_num_pending)",
                  "{{stream_name}}/{{consumer_name}}",
                ],
              ],
            },
            {
              title: "Ack pending",
              description:
                "Delivered and not acknowledged yet (work in progress). Pending rising while this is flat: consumers are stuck.",
              queries: [
                [
                  "max by (stream_name, consumer_name) (jetstream_consumer_num_ack_pending)",
                  "{{stream_name}}/{{consumer_name}}",
                ],
              ],
            },
            {
              title: "Redeliveries",
              description: "Messages delivered more than once.",
              queries: [
                [
                  "max by (stream_name, consumer_name) (jetstream_consumer_num_redelivered)",
                  "{{stream_name}}/{{consumer_name}}",
                ],
              ],
            },
            {
              title: "Waiting pulls",
              description: "Pull requests waiting per consumer (0 = nobody is fetching).",
              queries: [["max by (consumer_name) (jetstream_consumer_num_waiting)", "{{consumer_name}}"]],
            },
          ],
        ],
        [
          "Servers",
          [
            {
              title: "Slow consumers",
              description: "Clients the servers cut off for not keeping up.",
              queries: [["sum(gnatsd_varz_slow_consumers)", "slow consumers"]],
            },
            {
              title: "Connections",
              description: "Client connections.",
              queries: [["sum by (server_id) (gnatsd_varz_connections)", "{{server_id}}"]],
            },
            {
              title: "Messages per second",
              description: "Messages in and out of the servers.",
              queries: [
                ["sum(rate(gnatsd_varz_in_msgs[$__rate_interval]))", "in"],
                ["sum(rate(gnatsd_varz_out_msgs[$__rate_interval]))", "out"],
              ],
            },
            {
              title: "Stream size",
              description: "Messages per stream.",
              queries: [["max by (stream_name) (jetstream_stream_total_messages)", "{{stream_name}}"]],
            },
          ],
        ],
      ],
    ),
  );
}

/** Every dashboard by file name under `deploy/grafana/dashboards/`. */
export function dashboards(): Record<string, Dashboard> {
  return {
    "fleet.json": fleetDashboard(),
    "run.json": runDashboard(),
    "gateway.json": gatewayDashboard(),
    "nats.json": natsDashboard(),
  };
}

/** Every query of a dashboard, with its panel's title (rows have none). */
export function panelQueries(d: Dashboard): { panel: string; expr: string }[] {
  const out: { panel: string; expr: string }[] = [];
  for (const p of (d.panels ?? []) as Panel[]) {
    for (const t of (p.targets ?? []) as { expr?: string }[])
      out.push({ panel: p.title ?? "", expr: t.expr ?? "" });
  }
  return out;
}

/** The JSON text of a dashboard file (stable: 2-space indent, trailing newline). */
export const dashboardJson = (d: Dashboard) => `${JSON.stringify(d, null, 2)}\n`;

/** Where the dashboard files live. */
export const DASHBOARDS_DIR = join(import.meta.dirname, "../../../deploy/grafana/dashboards");

if (import.meta.main) {
  for (const [file, d] of Object.entries(dashboards())) {
    await writeFile(join(DASHBOARDS_DIR, file), dashboardJson(d));
    process.stdout.write(`wrote deploy/grafana/dashboards/${file}\n`);
  }
}
