import type { AdmissionOptions } from "./domain/admission.ts";
import type { BackoffOptions } from "./domain/backoff.ts";
import type { BreakerOptions } from "./domain/breaker.ts";
import type { PriceTable } from "./domain/ledger.ts";
import type { CacheAwareOptions, PolicyName, RoutingPolicy } from "./domain/policy.ts";
import { MAX_BODY_BYTES } from "./http-util.ts";
import type { LedgerStore } from "./store.ts";
import type { UpstreamConfig } from "./upstreams.ts";

/** Active health checks of upstreams. */
export interface HealthCheckOptions {
  /** Interval between checks (ms). Default 5 000. */
  intervalMs?: number;
  /** Timeout of one check (ms). Default 2 000. */
  timeoutMs?: number;
  /**
   * What to GET: `"health"` (default) is `/health` at the endpoint's origin (SGLang, sim-llm); `"models"` is
   * `<endpoint>/models` with the provider key (any OpenAI-compatible server).
   */
  mode?: "health" | "models";
  /** Consecutive failed checks that mark an upstream unhealthy. Default 2. */
  unhealthyThreshold?: number;
  /** Consecutive passed checks that mark it healthy again. Default 1. */
  healthyThreshold?: number;
}

/** Options of `startGateway` (README "Programmatic"). */
export interface GatewayOptions {
  /** Initial upstreams (may be empty; add more at run time). */
  upstreams: UpstreamConfig[];
  /** Routing policy name, or a policy object. Default `cache_aware`. */
  policy?: PolicyName | RoutingPolicy;
  /** Session affinity (header `x-longshot-task-id`, else the token's task) on top of a named policy. Default true. */
  sessionAffinity?: boolean;
  /** Tuning of the cache-aware policy. */
  cacheAware?: CacheAwareOptions;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Bind address; default 127.0.0.1. */
  host?: string;
  /** Bearer token of `/admin/*`. Without it the admin API answers 403. */
  adminToken?: string;
  /**
   * `"tokens"` (default): `/v1/*` needs a token issued by `POST /admin/tokens`. `"open"`: any caller is served;
   * requests without a known token are accounted to run `"anonymous"`.
   */
  auth?: "tokens" | "open";
  /**
   * Durable grants and usage (e.g. `natsLedgerStore`): tokens survive a restart, budgets keep counting what
   * a run already used. Without it the ledger lives in memory only.
   */
  store?: LedgerStore;
  /** How often changed run usage is written to the store (ms). Default 1 000. */
  usageFlushMs?: number;
  /** Price table for cost accounting (model → prices per million tokens; `"*"` is the fallback). */
  prices?: PriceTable;
  /** Bounded admission queue (back-pressure). */
  admission?: AdmissionOptions;
  /** Largest accepted request body (bytes); a larger one gets 413 `request_too_large`. Default 64 MiB. */
  maxBodyBytes?: number;
  /** Deadline of a whole client request, retries included (ms). Default 600 000. */
  requestTimeoutMs?: number;
  /** Per attempt: longest wait for the first response byte (streams) or the response head (ms). Default 120 000. */
  firstByteTimeoutMs?: number;
  /** Retries before the first byte reached the client: `maxRetries` (default 3) and backoff with jitter. */
  retry?: BackoffOptions & { maxRetries?: number };
  /** Per-upstream circuit breaker. */
  breaker?: BreakerOptions;
  /** Active health checks, or false to disable them. */
  health?: HealthCheckOptions | false;
  /** pino level; default `LOG_LEVEL` or info. */
  logLevel?: string;
  /** Where log lines go (default stdout). Every provider key and the admin token are redacted by value. */
  logDestination?: { write(line: string): void };
  /** Random source in [0, 1) for backoff jitter (tests). */
  random?: () => number;
}

/**
 * {@link GatewayOptions} with their defaults applied: what the gateway's modules read at run time. Times are in
 * ms, sizes in bytes.
 */
export interface GatewaySettings {
  /** Bind address (default 127.0.0.1). */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  auth: "tokens" | "open";
  /** Bearer token of `/admin/*`; undefined (also for an empty string) disables the admin API. */
  adminToken: string | undefined;
  maxBodyBytes: number;
  requestTimeoutMs: number;
  firstByteTimeoutMs: number;
  /** Retries after the first attempt (≥ 0). */
  maxRetries: number;
  /** Backoff between attempts (`GatewayOptions.retry`). */
  backoff: BackoffOptions;
  /** Random source in [0, 1) for backoff jitter. */
  random: () => number;
  /** Active health checks, undefined when disabled. */
  health: HealthCheckOptions | undefined;
  /** How often changed run usage is written to the store. */
  usageFlushMs: number;
}

/** Applies the defaults of {@link GatewayOptions} (documented there). Never throws. */
export function resolveSettings(options: GatewayOptions): GatewaySettings {
  return {
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 0,
    auth: options.auth ?? "tokens",
    adminToken: options.adminToken || undefined,
    maxBodyBytes: options.maxBodyBytes ?? MAX_BODY_BYTES,
    requestTimeoutMs: options.requestTimeoutMs ?? 600_000,
    firstByteTimeoutMs: options.firstByteTimeoutMs ?? 120_000,
    maxRetries: Math.max(0, options.retry?.maxRetries ?? 3),
    backoff: options.retry ?? {},
    random: options.random ?? Math.random,
    health: options.health === false ? undefined : (options.health ?? {}),
    usageFlushMs: options.usageFlushMs ?? 1000,
  };
}
