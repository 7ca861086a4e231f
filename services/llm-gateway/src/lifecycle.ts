import type { GatewayContext } from "./context.ts";
import { startHealthChecks } from "./health-checks.ts";
import type { HttpServer } from "./server.ts";

/** What runs beside the HTTP server; `stop()` ends every timer and watch it started (idempotent, synchronous). */
export interface Background {
  stop(): void;
}

/**
 * Starts what runs beside the HTTP server: the store's usage watch (other processes' flushes), the usage flush
 * every `usageFlushMs` (with a store) and the active health checks (unless disabled; the first round at once).
 * Timers are unref'd. Never rejects (a watch that cannot start is logged).
 */
export async function startBackground(ctx: GatewayContext): Promise<Background> {
  const { accounts, settings } = ctx;
  const stopWatch = await accounts.watch();
  const flushTimer = accounts.durable
    ? setInterval(() => void accounts.flush(), settings.usageFlushMs).unref()
    : undefined;
  const stopHealth = settings.health ? startHealthChecks(ctx, settings.health) : undefined;
  return {
    stop() {
      stopHealth?.();
      if (flushTimer) clearInterval(flushTimer);
      stopWatch?.();
    },
  };
}

/**
 * Shuts a started gateway down, in order: background work stopped; the server stops accepting, in-flight requests
 * get up to `graceMs` (ms) before connections are cut; the usage counted since the last flush is written to the
 * store; every upstream pool is closed. Never rejects for a store failure (logged; the usage is then lost).
 */
export async function shutdown(
  ctx: GatewayContext,
  server: HttpServer,
  background: Background,
  graceMs: number,
): Promise<void> {
  background.stop();
  await server.close(graceMs);
  await ctx.accounts.flush();
  await ctx.upstreams.closePools();
}
