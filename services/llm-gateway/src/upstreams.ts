import type { OutgoingHttpHeaders } from "node:http";
import { Pool } from "undici";
import { type BreakerOptions, type BreakerState, CircuitBreaker } from "./domain/breaker.ts";
import { forwardHeaders } from "./http-util.ts";

/** An upstream model endpoint (one SGLang / vLLM / OpenAI-compatible replica). */
export interface UpstreamConfig {
  /** Unique name (metrics label, admin API). */
  name: string;
  /** OpenAI base URL ending in `/v1`, e.g. `http://replica-1:30000/v1`. */
  endpoint: string;
  /** Provider key, sent upstream as `Authorization: Bearer`; never returned or logged. */
  apiKey?: string | undefined;
  /** Relative share of traffic for weighted policies (> 0). Default 1. */
  weight?: number | undefined;
  /**
   * Model ids served here: a request for model X is routed only to upstreams listing X or listing nothing.
   * Omit for a replica that serves whatever it is asked (one model per gateway).
   */
  models?: string[] | undefined;
}

/** Lifecycle of an upstream: `active` takes new requests; `draining` finishes its in-flight ones only. */
export type UpstreamMode = "active" | "draining";

/** Public, secret-free view of an upstream (the admin API's answer). */
export interface UpstreamInfo {
  name: string;
  endpoint: string;
  weight: number;
  mode: UpstreamMode;
  healthy: boolean;
  breaker: BreakerState;
  inflight: number;
  hasApiKey: boolean;
  /** Models it serves; absent = any. */
  models?: string[];
}

/** A whole upstream answer read into memory: status, forwardable headers (see `forwardHeaders`) and body. */
export interface BufferedResponse {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

/** Thrown for an invalid upstream (bad URL, duplicate name). `code` is the admin API error code. */
export class UpstreamError extends Error {
  override name = "UpstreamError";
  readonly code: "invalid_upstream" | "duplicate_upstream" | "unknown_upstream";
  constructor(code: UpstreamError["code"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** One upstream's live state: connection pool, breaker, health, in-flight count and drain mode. */
export class Upstream {
  readonly name: string;
  readonly endpoint: string;
  readonly url: URL;
  readonly apiKey: string | undefined;
  readonly weight: number;
  /** Models served (see {@link UpstreamConfig.models}); undefined = any. */
  readonly models: ReadonlySet<string> | undefined;
  /**
   * Keep-alive connection pool to the endpoint's origin (undici: about 60 µs less CPU per request than
   * `node:http` with a keep-alive agent, measured on the benchmark machine). No undici timeouts: the gateway
   * runs its own first-byte and request deadlines.
   */
  readonly pool: Pool;
  readonly breaker: CircuitBreaker;
  /** Precomputed path (and query) of `chat/completions` under the endpoint (no URL parsing per request). */
  readonly chatPath: string;
  mode: UpstreamMode = "active";
  /** Set once removed from the registry (in-flight requests still finish). */
  removed = false;
  healthy = true;
  healthFailures = 0;
  healthSuccesses = 0;
  inflight = 0;
  /** Resolves waiters of {@link idle}. */
  private idleWaiters: (() => void)[] = [];

  constructor(config: UpstreamConfig, breaker: BreakerOptions) {
    let url: URL;
    try {
      url = new URL(config.endpoint);
    } catch (err) {
      throw new UpstreamError("invalid_upstream", `upstream ${config.name}: invalid endpoint URL`, {
        cause: err,
      });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new UpstreamError("invalid_upstream", `upstream ${config.name}: endpoint must be http(s)`);
    }
    if (!url.pathname.endsWith("/")) url.pathname = `${url.pathname}/`;
    this.name = config.name;
    this.endpoint = config.endpoint;
    this.url = url;
    this.apiKey = config.apiKey || undefined;
    this.weight = config.weight !== undefined && config.weight > 0 ? config.weight : 1;
    this.models = config.models && config.models.length > 0 ? new Set(config.models) : undefined;
    this.pool = new Pool(url.origin, {
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 60_000,
    });
    this.breaker = new CircuitBreaker(breaker);
    this.chatPath = this.pathOf("chat/completions");
  }

  /** URL of an OpenAI path under the endpoint, e.g. `chat/completions` → `…/v1/chat/completions`. */
  resolve(path: string): URL {
    return new URL(path, this.url);
  }

  /** Origin-relative path (and query) of an OpenAI path under the endpoint, for requests on {@link pool}. */
  pathOf(path: string): string {
    const u = this.resolve(path);
    return `${u.pathname}${u.search}`;
  }

  /**
   * GET of an origin-relative `path` on the pool, with a deadline of `timeoutMs` (ms) for the whole answer; the
   * provider key is sent when `withKey`. Used by health checks and `/v1/models`, not by the proxy path.
   * @returns the answer, or undefined on a connection error or timeout (never rejects).
   */
  async get(path: string, withKey: boolean, timeoutMs: number): Promise<BufferedResponse | undefined> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (withKey && this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    try {
      const r = await this.pool.request({
        method: "GET",
        path,
        headers,
        signal: AbortSignal.timeout(timeoutMs),
      });
      const body = Buffer.from(await r.body.arrayBuffer());
      return { status: r.statusCode, headers: forwardHeaders(r.headers), body };
    } catch {
      return undefined;
    }
  }

  /** Whether it serves `model` (an upstream without a model list serves any; a request without a model goes anywhere). */
  serves(model: string | undefined): boolean {
    return model === undefined || this.models === undefined || this.models.has(model);
  }

  /** Whether new requests may be routed here at `now` (active, healthy, circuit not open or a trial free). */
  eligible(now: number): boolean {
    return !this.removed && this.mode === "active" && this.healthy && this.breaker.canRequest(now);
  }

  /** One more request in flight. */
  begin(): void {
    this.inflight++;
  }

  /** One request fewer in flight; wakes {@link idle} waiters at zero. */
  end(): void {
    this.inflight--;
    if (this.inflight <= 0) {
      this.inflight = 0;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Secret-free view. */
  info(now: number): UpstreamInfo {
    return {
      name: this.name,
      endpoint: this.endpoint,
      weight: this.weight,
      mode: this.mode,
      healthy: this.healthy,
      breaker: this.breaker.state(now),
      inflight: this.inflight,
      hasApiKey: this.apiKey !== undefined,
      ...(this.models ? { models: [...this.models] } : {}),
    };
  }
}
