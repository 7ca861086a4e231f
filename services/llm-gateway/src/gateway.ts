import { createContext } from "./context.ts";
import type { Grant, RunUsage } from "./domain/ledger.ts";
import type { RoutingPolicy } from "./domain/policy.ts";
import { type Background, shutdown, startBackground } from "./lifecycle.ts";
import type { GatewayOptions } from "./options.ts";
import { baseUrl, createHttpServer, route } from "./server.ts";
import { type UpstreamAdmin, upstreamAdmin } from "./upstream-registry.ts";

export { OVERHEAD_HEADER, RUN_ID_HEADER, TASK_ID_HEADER, UPSTREAM_HEADER } from "./http-util.ts";
export type { GatewayOptions, HealthCheckOptions } from "./options.ts";
export type { UpstreamAdmin } from "./upstream-registry.ts";

/** A running gateway. */
export interface Gateway {
  /** OpenAI base URL, `http://HOST:PORT/v1`. */
  url: string;
  /** The TCP port it listens on. */
  port: number;
  /** Run-time management of upstreams (same as `/admin/upstreams`). */
  upstreams: UpstreamAdmin;
  /**
   * Issues a bearer token (same as `POST /admin/tokens`); with a store, resolves once the grant is stored.
   * @throws the store's error (the token is then not issued).
   */
  issueToken(grant: Grant): Promise<string>;
  /** Usage of one run (read from the store when this process has not seen it), or of every run seen. */
  usage(runId?: string): Promise<RunUsage[]>;
  /** The Prometheus text of `/metrics`. */
  metricsText(): Promise<string>;
  /** The policy in use. */
  policy: RoutingPolicy;
  /** Stops listening. Waits up to `graceMs` (default 0) for in-flight requests, then cuts connections. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Starts the LLM gateway: one OpenAI-compatible endpoint (`/v1/chat/completions`, `/v1/models`) in front of
 * many replicas, with routing policies, retries, circuit breakers, health checks, admission control, token
 * budgets, usage accounting and Prometheus metrics. See the README for the HTTP API.
 *
 * Wiring only: the shared `GatewayContext` (`context.ts`), the initial upstreams, the background work
 * (`lifecycle.ts`: usage watch and flush, health checks) and the HTTP server (`server.ts`, routing to
 * `handlers/*`; the proxy path is `proxy.ts`). Nothing keeps running when it throws.
 * @throws UpstreamError for an invalid or duplicate initial upstream; the listen error (e.g. EADDRINUSE).
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const ctx = createContext(options);
  const { settings, log, policy, upstreams, accounts } = ctx;
  const admin = upstreamAdmin(upstreams, log);
  let background: Background | undefined;
  try {
    for (const c of options.upstreams) upstreams.add(c);
    background = await startBackground(ctx);
  } catch (err) {
    await upstreams.closePools();
    throw err;
  }
  const server = createHttpServer(ctx, (req, res) => route(ctx, admin, req, res));
  let port: number;
  try {
    port = await server.listen(settings.port, settings.host);
  } catch (err) {
    background.stop();
    await upstreams.closePools();
    throw err;
  }
  const url = baseUrl(settings.host, port);
  log.info(
    {
      url,
      policy: policy.name,
      auth: settings.auth,
      upstreams: upstreams.names(),
      maxRetries: settings.maxRetries,
      health: settings.health !== undefined,
    },
    "llm-gateway listening",
  );

  const started = background;
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    policy,
    upstreams: admin,
    issueToken: (grant) => accounts.issue(grant),
    usage: (runId) => accounts.usage(runId),
    metricsText: () => ctx.metrics.registry.metrics(),
    close(graceMs = 0) {
      closing ??= shutdown(ctx, server, started, graceMs);
      return closing;
    },
  };
}
