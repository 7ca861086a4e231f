import type { GatewayContext } from "./context.ts";
import type { HealthCheckOptions } from "./options.ts";
import type { Upstream } from "./upstreams.ts";

/** Whether one health check of `u` passes: a 2xx answer within `h.timeoutMs` (default 2 000 ms). */
async function checkOnce(u: Upstream, h: HealthCheckOptions): Promise<boolean> {
  const path = h.mode === "models" ? u.pathOf("models") : "/health";
  const r = await u.get(path, h.mode === "models", h.timeoutMs ?? 2000);
  return r !== undefined && r.status >= 200 && r.status < 300;
}

/**
 * Checks every upstream once, in parallel, and applies the thresholds: `unhealthyThreshold` (default 2)
 * consecutive failures mark an upstream unhealthy, `healthyThreshold` (default 1) passes healthy again; each change
 * sets `llm_gateway_upstream_healthy` and is logged. Upstreams removed meanwhile are left alone. Never rejects.
 */
export async function runHealthChecks(ctx: GatewayContext, h: HealthCheckOptions): Promise<void> {
  const { metrics, log } = ctx;
  await Promise.all(
    [...ctx.upstreams.values()].map(async (u) => {
      const ok = await checkOnce(u, h);
      if (u.removed) return;
      if (ok) {
        u.healthFailures = 0;
        u.healthSuccesses++;
        if (!u.healthy && u.healthSuccesses >= (h.healthyThreshold ?? 1)) {
          u.healthy = true;
          metrics.upstreamHealthy.set({ upstream: u.name }, 1);
          log.info({ upstream: u.name }, "upstream healthy again");
        }
      } else {
        u.healthSuccesses = 0;
        u.healthFailures++;
        if (u.healthy && u.healthFailures >= (h.unhealthyThreshold ?? 2)) {
          u.healthy = false;
          metrics.upstreamHealthy.set({ upstream: u.name }, 0);
          log.warn({ upstream: u.name, failures: u.healthFailures }, "upstream failed health checks");
        }
      }
    }),
  );
}

/**
 * Starts the active health checks: a first round at once, then one `h.intervalMs` (default 5 000 ms) after the
 * previous round ended. Timers are unref'd (they keep no process alive).
 * @returns a function that stops them (a round in progress finishes, no new one starts).
 */
export function startHealthChecks(ctx: GatewayContext, h: HealthCheckOptions): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = (delay: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      runHealthChecks(ctx, h).finally(() => schedule(h.intervalMs ?? 5000));
    }, delay);
    timer.unref();
  };
  schedule(0);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
