import { createLogger, type Logger, SecretSet } from "@longshot/log";
import { Accounts } from "./accounts.ts";
import { AdmissionQueue } from "./domain/admission.ts";
import { Ledger } from "./domain/ledger.ts";
import { createPolicy, type RoutingPolicy } from "./domain/policy.ts";
import { createMetrics, type GatewayMetrics } from "./metrics.ts";
import { type GatewayOptions, type GatewaySettings, resolveSettings } from "./options.ts";
import { UpstreamRegistry } from "./upstream-registry.ts";

/**
 * Everything a running gateway's modules share, built once by {@link createContext} and passed explicitly to the
 * HTTP handlers, the proxy path, health checks and the lifecycle (no module keeps state of its own).
 */
export interface GatewayContext {
  /** The options with their defaults applied. */
  readonly settings: GatewaySettings;
  /** The service logger; the admin token and every provider key are redacted from its lines by value. */
  readonly log: Logger;
  /** Whether the log takes debug lines: per-request debug objects cost CPU even when dropped, so check first. */
  readonly debug: boolean;
  /** The Prometheus metrics (a registry of this gateway's own). */
  readonly metrics: GatewayMetrics;
  /** The routing policy; it only sees eligible upstreams. */
  readonly policy: RoutingPolicy;
  /** The upstreams by name. */
  readonly upstreams: UpstreamRegistry;
  /** Back-pressure: a bounded FIFO of requests waiting for a slot. */
  readonly admission: AdmissionQueue;
  /** Tokens, budgets and usage (ledger and store). */
  readonly accounts: Accounts;
}

/**
 * Builds the context of a gateway from its options: settings, logger (with a live secret set holding the admin
 * token; provider keys join it as upstreams are added), metrics, policy, an empty upstream registry, admission
 * queue and accounts. Starts nothing (no timer, no socket, no store call).
 */
export function createContext(options: GatewayOptions): GatewayContext {
  const settings = resolveSettings(options);
  const policy =
    typeof options.policy === "object"
      ? options.policy
      : createPolicy(options.policy ?? "cache_aware", {
          sessionAffinity: options.sessionAffinity !== false,
          ...(options.cacheAware ? { cacheAware: options.cacheAware } : {}),
        });
  const secrets = new SecretSet([settings.adminToken]);
  const log = createLogger({
    service: "llm-gateway",
    ...(options.logLevel ? { level: options.logLevel } : {}),
    secrets,
    destination: options.logDestination ?? { write: (line: string) => void process.stdout.write(line) },
  });
  const admission = new AdmissionQueue(options.admission);
  // Live gauges are read from the registry at scrape time (after it exists).
  const metrics = createMetrics({
    queueDepth: () => admission.queued,
    refresh: () => upstreams.sampleGauges(Date.now()),
  });
  const upstreams = new UpstreamRegistry({ breaker: options.breaker ?? {}, metrics, log, policy, secrets });
  const store = options.store;
  const ledger = new Ledger(options.prices ?? {}, undefined, store !== undefined);
  return {
    settings,
    log,
    debug: log.isLevelEnabled("debug"),
    metrics,
    policy,
    upstreams,
    admission,
    accounts: new Accounts({ ledger, store, metrics, log }),
  };
}
