import type { ServerResponse } from "node:http";
import type { GatewayContext } from "../context.ts";
import { sendJson } from "../http-util.ts";

/**
 * `GET /healthz` (always 200 while the process serves) and `GET /readyz` (503 when no upstream is eligible):
 * `{status: "ok" | "degraded", upstreams: {total, eligible}}`.
 */
export function handleHealth(ctx: GatewayContext, res: ServerResponse, readiness: boolean): void {
  const now = Date.now();
  const list = [...ctx.upstreams.values()];
  const eligible = list.filter((u) => u.eligible(now)).length;
  const ready = eligible > 0;
  sendJson(res, readiness && !ready ? 503 : 200, {
    status: ready ? "ok" : "degraded",
    upstreams: { total: list.length, eligible },
  });
}

/** `GET /metrics`: the Prometheus text of the gateway's registry. Rejects only if a collector throws. */
export async function handleMetrics(ctx: GatewayContext, res: ServerResponse): Promise<void> {
  const { registry } = ctx.metrics;
  const text = await registry.metrics();
  res.writeHead(200, { "content-type": registry.contentType, "content-length": Buffer.byteLength(text) });
  res.end(text);
}
