import { afterEach, describe, expect, it } from "vitest";
import {
  createServiceRegistry,
  llmCallMetrics,
  type MetricsServer,
  startMetricsServer,
} from "../src/index.ts";

/** The value of the sample `name` whose labels include every one of `labels` (Prometheus text), or undefined. */
function value(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const m of text.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/gm)) {
    if (m[1] !== name) continue;
    const set = new Map([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    if (Object.entries(labels).every(([k, v]) => set.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

let server: MetricsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("a service's /metrics and /healthz", () => {
  it("serves Node's default metrics under their standard names with the service label, and the service's own", async () => {
    const registry = createServiceRegistry("planner");
    const observe = llmCallMetrics(registry);
    observe({ durationMs: 1500, ok: true, promptTokens: 120, completionTokens: 30 });
    observe({ durationMs: 20, ok: false });
    server = await startMetricsServer({ registry, host: "127.0.0.1", port: 0 });
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toMatch(/^process_cpu_seconds_total\{service="planner"\} \d/m);
    expect(text).toMatch(/^process_resident_memory_bytes\{service="planner"\} \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds\{service="planner"\} /m);
    const planner = { service: "planner" };
    expect(value(text, "longshot_llm_request_duration_seconds_count", { ...planner, outcome: "ok" })).toBe(1);
    expect(value(text, "longshot_llm_request_duration_seconds_count", { ...planner, outcome: "error" })).toBe(
      1,
    );
    expect(value(text, "longshot_llm_request_duration_seconds_sum", { ...planner, outcome: "ok" })).toBe(1.5);
    expect(value(text, "longshot_llm_tokens_total", { ...planner, type: "prompt" })).toBe(120);
    expect(value(text, "longshot_llm_tokens_total", { ...planner, type: "completion" })).toBe(30);
    for (const line of text.split("\n").filter((l) => l && !l.startsWith("#")))
      expect(line, line).toContain('service="planner"');
  });

  it("answers /healthz from the health check: 200 when healthy, 503 with the reason when not; 404 elsewhere", async () => {
    let healthy = true;
    server = await startMetricsServer({
      registry: createServiceRegistry("merger"),
      host: "127.0.0.1",
      port: 0,
      health: () => (healthy ? { ok: true } : { ok: false, detail: { nats: "reconnecting" } }),
    });
    let res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
    healthy = false;
    res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: "unhealthy", nats: "reconnecting" });
    expect((await fetch(`${server.url}/nothing`)).status).toBe(404);
    expect((await fetch(`${server.url}/metrics`, { method: "POST" })).status).toBe(405);
  });

  it("fails to start on a port in use, saying so", async () => {
    server = await startMetricsServer({ registry: createServiceRegistry("a"), host: "127.0.0.1", port: 0 });
    await expect(
      startMetricsServer({ registry: createServiceRegistry("b"), host: "127.0.0.1", port: server.port }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});
