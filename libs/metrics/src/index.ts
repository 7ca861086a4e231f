import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, exponentialBuckets, Histogram, Registry } from "prom-client";

export { Counter, exponentialBuckets, Gauge, Histogram, linearBuckets, Registry } from "prom-client";

/**
 * A Prometheus registry for one service process: every metric on it carries the label `service="<service>"`
 * (prom-client default labels), and Node's default metrics are registered under their standard names
 * (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`, …), not
 * prefixed, so dashboards written for any Node process work and `service` tells the processes apart.
 */
export function createServiceRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * Histogram buckets in seconds for work that takes between about 10 ms and 2 hours (sandbox runs, merges,
 * sweeps, model calls): 0.01 s doubling 20 times (last bucket ≈ 5243 s).
 */
export const SECONDS_BUCKETS = exponentialBuckets(0.01, 2, 20);

/** What `/healthz` answers: `ok` false → HTTP 503. `detail` is added to the JSON body. */
export interface HealthReport {
  ok: boolean;
  detail?: Record<string, unknown>;
}

/** A running `/metrics` + `/healthz` HTTP server. `url` is its base, e.g. `http://127.0.0.1:9464`. */
export interface MetricsServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  registry: Registry;
  /** Interface to listen on (`METRICS_HOST`; `0.0.0.0` in containers). */
  host: string;
  /** TCP port (`METRICS_PORT`); 0 = any free port (see {@link MetricsServer.port}). */
  port: number;
  /** Called for every `/healthz`; default: always healthy. */
  health?: () => HealthReport | Promise<HealthReport>;
}

/**
 * Serves `GET /metrics` (the registry in Prometheus text format 0.0.4) and `GET /healthz` (`200 {"status":"ok"}`
 * or `503 {"status":"unhealthy", …detail}`); anything else is 404.
 * @throws the listen error (e.g. EADDRINUSE) when the port cannot be bound.
 */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void respond(req, res, opts).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(`error: ${err.message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function respond(req: IncomingMessage, res: ServerResponse, opts: MetricsServerOptions): Promise<void> {
  const path = (req.url ?? "/").split("?")[0];
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD" }).end();
    return;
  }
  if (path === "/metrics") {
    const text = await opts.registry.metrics();
    res.writeHead(200, { "content-type": opts.registry.contentType }).end(text);
    return;
  }
  if (path === "/healthz") {
    const h = (await opts.health?.()) ?? { ok: true };
    res
      .writeHead(h.ok ? 200 : 503, { "content-type": "application/json" })
      .end(JSON.stringify({ status: h.ok ? "ok" : "unhealthy", ...h.detail }));
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
}

/** One model call as a service's chat client saw it: wall time in ms, success, tokens the endpoint reported. */
export interface LlmCallSample {
  durationMs: number;
  ok: boolean;
  promptTokens?: number;
  completionTokens?: number;
}

/**
 * Model-call metrics of a service that calls the model (planner, subplanner, reconciler), on `registry`:
 * `longshot_llm_request_duration_seconds{outcome="ok"|"error"}` (each call including the SDK's retries) and
 * `longshot_llm_tokens_total{type="prompt"|"completion"}` (prompt + completion = total, nothing counted twice).
 * Returns the observer to give the chat client (`chatClientFromConfig(cfg, { observe })`).
 */
export function llmCallMetrics(registry: Registry): (s: LlmCallSample) => void {
  const duration = new Histogram({
    name: "longshot_llm_request_duration_seconds",
    help: "Model calls of this service (through the LLM gateway), by outcome; SDK retries included.",
    labelNames: ["outcome"] as const,
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  });
  const tokens = new Counter({
    name: "longshot_llm_tokens_total",
    help: "Tokens of this service's model calls as the endpoint reported them, by type (prompt, completion).",
    labelNames: ["type"] as const,
    registers: [registry],
  });
  // Both series exist from the start, so rate() and dashboards see 0 rather than nothing.
  duration.zero({ outcome: "ok" });
  duration.zero({ outcome: "error" });
  tokens.inc({ type: "prompt" }, 0);
  tokens.inc({ type: "completion" }, 0);
  return (s) => {
    duration.observe({ outcome: s.ok ? "ok" : "error" }, s.durationMs / 1000);
    if (s.promptTokens) tokens.inc({ type: "prompt" }, s.promptTokens);
    if (s.completionTokens) tokens.inc({ type: "completion" }, s.completionTokens);
  };
}
