import { join } from "node:path";
import { parsePrometheusText, tempDir, waitFor } from "@longshot/testkit";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboards, panelQueries } from "../../monitor/grafana/dashboards.ts";
import { CLUSTER_SERVICES, type EmbeddedCluster, freePort, startEmbeddedCluster } from "../src/cluster.ts";
import { type SimLlmProcess, startSimLlmProcess } from "../src/demo.ts";
import { findPrometheus, type Observer, startObserver } from "../src/observe.ts";
import { makeListRepo, writeScript } from "./fixtures.ts";

const KEY = "sim-observe-secret-key-0123456789";
const RUN = "run-observe-1";
let dir: Awaited<ReturnType<typeof tempDir>>;
let sim: SimLlmProcess;
let cluster: EmbeddedCluster;
let observer: Observer;
let nc: NatsConnection;
let repo: string;

beforeAll(async () => {
  findPrometheus(); // fails here, saying how to install it, when Debian's prometheus is missing
  dir = await tempDir("longshot-observe-");
  repo = join(dir.path, "target");
  await makeListRepo(repo);
  sim = await startSimLlmProcess(await writeScript(dir.path, 2), KEY);
  cluster = await startEmbeddedCluster({
    stateDir: join(dir.path, "state"),
    env: {
      LLM_BASE_URL: sim.url,
      LLM_API_KEY: KEY,
      LLM_MODEL: sim.model,
      MAX_WORKERS: "2",
      // Prices make the cost series real (US dollars per million tokens).
      GATEWAY_PRICES: JSON.stringify({
        [sim.model]: { inputPerMTok: 0.6, cachedInputPerMTok: 0.1, outputPerMTok: 2.2 },
      }),
    },
  });
  observer = await startObserver({
    targets: cluster.metricsTargets(),
    dir: join(dir.path, "prometheus"),
    port: await freePort(),
    scrapeIntervalS: 1,
  });
  nc = await connect(cluster.client);
}, 90_000);

afterAll(async () => {
  await nc?.drain();
  await observer?.stop();
  await cluster?.stop();
  await sim?.stop();
  await dir?.cleanup();
});

/** An instant PromQL query through Prometheus's HTTP API; throws with Prometheus's error. */
async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${observer.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data: { result: never[] } };
  if (body.status !== "success") throw new Error(`${expr}: ${body.error}`);
  return body.data.result;
}

/** Prometheus's active scrape targets and their health. */
async function targets(): Promise<{ health: string; scrapeUrl: string; lastError: string }[]> {
  const body = (await (await fetch(`${observer.url}/api/v1/targets?state=active`)).json()) as {
    data: { activeTargets: { health: string; scrapeUrl: string; lastError: string }[] };
  };
  return body.data.activeTargets;
}

/** Grafana's interval macros and the Run dashboard's variable, as Grafana would expand them for the last 10 min. */
const expand = (expr: string) =>
  expr.replaceAll("$__rate_interval", "1m").replaceAll("$__range", "10m").replaceAll("$run", RUN);

describe("observability of a running embedded cluster", () => {
  it("serves /metrics with its own families from every service, and /healthz", async () => {
    const families: Record<string, string> = {
      planner: "longshot_planner_iterations_total",
      subplanner: "longshot_llm_request_duration_seconds",
      dispatcher: "longshot_dispatcher_slots_used",
      merger: "longshot_merger_queue_length",
      reconciler: "longshot_reconciler_sweeps_total",
      monitor: "longshot_tasks",
      "llm-gateway": "llm_gateway_requests_total",
    };
    const targets = cluster.metricsTargets();
    expect(targets.map((t) => t.service).sort()).toEqual([...CLUSTER_SERVICES, "llm-gateway"].sort());
    for (const t of targets) {
      const text = await (await fetch(`${t.url}/metrics`)).text();
      expect(text, t.service).toContain(`# TYPE ${families[t.service]} `);
      expect(text, t.service).toMatch(
        new RegExp(`^process_cpu_seconds_total\\{service="${t.service}"\\} `, "m"),
      );
      expect((await fetch(`${t.url}/healthz`)).status, t.service).toBe(200);
    }
    const monitor = await (
      await fetch(`${targets.find((t) => t.service === "monitor")!.url}/metrics`)
    ).text();
    expect(parsePrometheusText(monitor).some((s) => s.name === "jetstream_consumer_num_pending")).toBe(true);
    expect(parsePrometheusText(monitor).some((s) => s.name === "gnatsd_varz_connections")).toBe(true);
  });

  it("after a run, every panel of every dashboard returns data from a live Prometheus scraping the cluster", async () => {
    const completed = new Promise<Record<string, unknown>>((resolve) => {
      const sub = nc.subscribe(`longshot.event.${RUN}.run.completed`, { max: 1 });
      void (async () => {
        for await (const m of sub) resolve(m.json<{ data: Record<string, unknown> }>().data);
      })();
    });
    nc.publish(
      "longshot.request",
      JSON.stringify({ runId: RUN, prompt: "Add list helpers first() and last()", repo }),
    );
    expect(await completed).toMatchObject({ status: "green", merged: 2 });

    // Every target is scraped and up, and Prometheus has seen the run's final figures.
    await waitFor(
      async () => {
        const t = await targets();
        return t.length === CLUSTER_SERVICES.length + 1 && t.every((x) => x.health === "up");
      },
      20_000,
      500,
    );
    await waitFor(
      async () =>
        (await query(`sum(longshot_merges_total{run="${RUN}",outcome="merged"})`))[0]?.value[1] === "2",
      20_000,
      500,
    );
    await new Promise((r) => setTimeout(r, 3000)); // two more scrapes after the last change

    const checked: string[] = [];
    const empty: string[] = [];
    for (const [file, d] of Object.entries(dashboards())) {
      for (const { panel, expr } of panelQueries(d)) {
        const result = await query(expand(expr));
        const line = `${file} | ${panel} | ${expr} → ${result.length} series`;
        checked.push(line);
        if (result.length === 0) empty.push(line);
      }
    }
    process.stdout.write(`panels checked against ${observer.url}:\n  ${checked.join("\n  ")}\n`);
    expect(empty).toEqual([]);
    expect(checked.length).toBeGreaterThan(40);
  });
});
