import type { Logger, SecretSet } from "@longshot/log";
import type { BreakerOptions } from "./domain/breaker.ts";
import { type ModelCatalog, modelCatalog } from "./domain/models.ts";
import type { RoutingPolicy } from "./domain/policy.ts";
import { BREAKER_STATES, type GatewayMetrics, setBreakerState } from "./metrics.ts";
import { Upstream, type UpstreamConfig, UpstreamError, type UpstreamInfo } from "./upstreams.ts";

/** Run-time management of upstreams (also exposed over `/admin/upstreams`). */
export interface UpstreamAdmin {
  list(): UpstreamInfo[];
  /** @throws UpstreamError for a bad config or a duplicate name. */
  add(config: UpstreamConfig): UpstreamInfo;
  /**
   * Removes an upstream: no new request goes to it; in-flight requests finish. Resolves once they did.
   * @throws UpstreamError when unknown.
   */
  remove(name: string): Promise<void>;
  /** Stops routing new requests to it (it stays listed). Resolves once its in-flight requests finished. */
  drain(name: string): Promise<void>;
  /** Routes to a drained upstream again. */
  resume(name: string): void;
}

/** What an {@link UpstreamRegistry} keeps current besides its map: metrics, the policy's history, log secrets. */
export interface UpstreamRegistryDeps {
  /** Circuit breaker settings of every upstream added. */
  breaker: BreakerOptions;
  metrics: GatewayMetrics;
  log: Logger;
  policy: RoutingPolicy;
  /** The log's secrets: every provider key is added to them. */
  secrets: SecretSet;
}

/**
 * The gateway's upstreams by name, in the order they were added, with their metric series: adding one registers
 * its provider key as a log secret and its gauges; removing one stops new traffic at once, lets in-flight requests
 * finish, then closes its pool and drops its series and routing history.
 */
export class UpstreamRegistry {
  private readonly byName = new Map<string, Upstream>();
  private readonly deps: UpstreamRegistryDeps;

  constructor(deps: UpstreamRegistryDeps) {
    this.deps = deps;
  }

  /** Number of upstreams (draining ones included). */
  get size(): number {
    return this.byName.size;
  }

  /** Every upstream, in the order they were added. */
  values(): IterableIterator<Upstream> {
    return this.byName.values();
  }

  /** Every upstream's name. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  /** The upstream called `name`, or undefined (e.g. removed meanwhile). */
  find(name: string): Upstream | undefined {
    return this.byName.get(name);
  }

  /** The upstream called `name`. @throws UpstreamError `unknown_upstream`. */
  get(name: string): Upstream {
    const u = this.byName.get(name);
    if (u === undefined) throw new UpstreamError("unknown_upstream", `no upstream named ${name}`);
    return u;
  }

  /**
   * Adds an upstream (healthy, circuit closed, nothing in flight).
   * @throws UpstreamError `duplicate_upstream` for a name in use, `invalid_upstream` for a bad endpoint.
   */
  add(config: UpstreamConfig): Upstream {
    const { metrics, log } = this.deps;
    if (this.byName.has(config.name)) {
      throw new UpstreamError("duplicate_upstream", `upstream ${config.name} already exists`);
    }
    const u = new Upstream(config, this.deps.breaker);
    this.deps.secrets.add(u.apiKey);
    u.breaker.onTransition = (from, to) => {
      metrics.breakerTransitions.inc({ upstream: u.name, to });
      setBreakerState(metrics, u.name, to);
      const level = to === "open" ? "warn" : "info";
      log[level]({ upstream: u.name, from, to }, "circuit breaker state changed");
    };
    this.byName.set(u.name, u);
    metrics.upstreamHealthy.set({ upstream: u.name }, 1);
    setBreakerState(metrics, u.name, "closed");
    metrics.active.set({ upstream: u.name }, 0);
    return u;
  }

  /**
   * Removes an upstream: it leaves the registry and the policy at once (before the first await); resolves once
   * its in-flight requests finished and its pool is closed. @throws UpstreamError `unknown_upstream` (rejects).
   */
  async remove(name: string): Promise<void> {
    const { metrics } = this.deps;
    const u = this.get(name);
    this.byName.delete(name);
    u.removed = true;
    this.deps.policy.forget(name);
    this.deps.log.info(
      { upstream: name, inflight: u.inflight },
      "upstream removed; in-flight requests finish",
    );
    await u.idle();
    await u.pool.destroy();
    for (const m of [metrics.upstreamHealthy, metrics.active]) m.remove({ upstream: name });
    for (const state of BREAKER_STATES) metrics.breakerState.remove({ upstream: name, state });
  }

  /**
   * Eligible upstreams at `now` serving `model` (any model when undefined), preferring ones not in `exclude`
   * (already tried): all eligible ones when every one was tried.
   */
  candidates(now: number, exclude: ReadonlySet<string>, model?: string): Upstream[] {
    const all: Upstream[] = [];
    const fresh: Upstream[] = [];
    for (const u of this.byName.values()) {
      if (!u.eligible(now) || !u.serves(model)) continue;
      all.push(u);
      if (!exclude.has(u.name)) fresh.push(u);
    }
    return fresh.length > 0 ? fresh : all;
  }

  /** Whether some upstream (eligible or not) serves `model`. */
  servedAnywhere(model: string): boolean {
    for (const u of this.byName.values()) if (u.serves(model)) return true;
    return false;
  }

  /** The models named in upstream configs, and whether some upstream serves any model. */
  catalog(): ModelCatalog {
    return modelCatalog(this.byName.values());
  }

  /** Sets the gauges read at scrape time (breaker state, requests in flight) from the upstreams at `now`. */
  sampleGauges(now: number): void {
    for (const u of this.byName.values()) {
      setBreakerState(this.deps.metrics, u.name, u.breaker.state(now));
      this.deps.metrics.active.set({ upstream: u.name }, u.inflight);
    }
  }

  /** Closes every upstream's connection pool (at shutdown, after the server stopped). */
  async closePools(): Promise<void> {
    await Promise.all([...this.byName.values()].map((u) => u.pool.destroy()));
  }
}

/**
 * The public {@link UpstreamAdmin} over a registry: what `/admin/upstreams` and `Gateway.upstreams` do, with a log
 * line per change.
 */
export function upstreamAdmin(registry: UpstreamRegistry, log: Logger): UpstreamAdmin {
  return {
    list: () => [...registry.values()].map((u) => u.info(Date.now())),
    add(config) {
      const u = registry.add(config);
      log.info({ upstream: u.name, endpoint: u.endpoint, weight: u.weight }, "upstream added");
      return u.info(Date.now());
    },
    remove: (name) => registry.remove(name),
    async drain(name) {
      const u = registry.get(name);
      u.mode = "draining";
      log.info({ upstream: name, inflight: u.inflight }, "upstream draining");
      await u.idle();
    },
    resume(name) {
      registry.get(name).mode = "active";
      log.info({ upstream: name }, "upstream resumed");
    },
  };
}
