import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { GatewayHeaders, RunId } from "@longshot/contracts";
import { createLogger, type Logger } from "@longshot/log";
import type { Dispatcher } from "undici";
import { z } from "zod";
import { type AdmissionOptions, AdmissionQueue } from "./domain/admission.ts";
import { type BackoffOptions, backoffDelay, isRetryableStatus } from "./domain/backoff.ts";
import { type BreakerOptions, type BreakerOutcome, breakerStateValue } from "./domain/breaker.ts";
import {
  type BudgetRefusal,
  type Grant,
  hashToken,
  Ledger,
  type PriceTable,
  type Reservation,
  type RunUsage,
} from "./domain/ledger.ts";
import {
  type CacheAwareOptions,
  type Candidate,
  createPolicy,
  type PolicyName,
  type RouteInput,
  type RoutingPolicy,
} from "./domain/policy.ts";
import { type ChatBodyView, viewChatBody } from "./domain/prompt.ts";
import { SseUsageTap, type UsageCounts, usageFromBody } from "./domain/sse.ts";
import {
  bearerToken,
  forwardHeaders,
  MAX_BODY_BYTES,
  readBody,
  safeEqual,
  sendError,
  sendJson,
} from "./http-util.ts";
import { createMetrics, type GatewayMetrics } from "./metrics.ts";
import type { LedgerStore, StoredUsage } from "./store.ts";
import { Upstream, type UpstreamConfig, UpstreamError, type UpstreamInfo } from "./upstreams.ts";

/** Header a worker sends with its task id: session affinity keeps a task on one replica. */
export const TASK_ID_HEADER = GatewayHeaders.taskId;
/** Header naming the run a service token's request is accounted to (see `Grant.anyRun`). */
export const RUN_ID_HEADER = GatewayHeaders.runId;
/** Response header naming the upstream that served the request. */
export const UPSTREAM_HEADER = "x-longshot-upstream";
/**
 * Response header: time the gateway spent on the request before sending its first upstream attempt (ms, 3
 * decimals: parse, auth, budget, queue, routing). Like LiteLLM's `x-litellm-overhead-duration-ms`.
 */
export const OVERHEAD_HEADER = "x-longshot-overhead-ms";

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

/** Options of {@link startGateway}. */
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
   * Durable grants and usage (e.g. {@link natsLedgerStore}): tokens survive a restart, budgets keep counting what
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

/** A running gateway. */
export interface Gateway {
  /** OpenAI base URL, `http://HOST:PORT/v1`. */
  url: string;
  port: number;
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

const ANONYMOUS: Grant = { runId: "anonymous", role: "anonymous" };

const AddUpstreamBody = z.object({
  name: z
    .string()
    .min(1)
    .regex(/^[A-Za-z0-9._:-]+$/, "letters, digits and . _ : - only"),
  endpoint: z.url(),
  apiKey: z.string().min(1).optional(),
  weight: z.number().positive().optional(),
  models: z.array(z.string().min(1)).min(1).optional(),
});

const IssueTokenBody = z.object({
  runId: z.string().min(1),
  taskId: z.string().min(1).optional(),
  role: z.string().min(1).optional(),
  budgetTokens: z.int().positive().optional(),
  anyRun: z.boolean().optional(),
  /** Lifetime of the token (ms); it is refused after that. */
  ttlMs: z.int().positive().optional(),
});

type AttemptResult =
  | { kind: "done" }
  | {
      kind: "retry";
      reason: string;
      response?: { status: number; headers: OutgoingHttpHeaders; body: Buffer };
    };

/** Redacts a changing set of secret values from every log line before it reaches `dest`. */
function redactingDestination(secrets: Set<string>, dest: { write(line: string): void }) {
  return {
    write(line: string) {
      let out = line;
      for (const s of secrets) if (s.length >= 4 && out.includes(s)) out = out.split(s).join("[redacted]");
      dest.write(out);
    },
  };
}

function issuesText(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
}

/**
 * Starts the LLM gateway: one OpenAI-compatible endpoint (`/v1/chat/completions`, `/v1/models`) in front of
 * many replicas, with routing policies, retries, circuit breakers, health checks, admission control, token
 * budgets, usage accounting and Prometheus metrics. See the README for the HTTP API.
 * @throws UpstreamError for an invalid or duplicate initial upstream; the listen error (e.g. EADDRINUSE).
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const host = options.host ?? "127.0.0.1";
  const auth = options.auth ?? "tokens";
  const adminToken = options.adminToken || undefined;
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const requestTimeoutMs = options.requestTimeoutMs ?? 600_000;
  const firstByteTimeoutMs = options.firstByteTimeoutMs ?? 120_000;
  const maxRetries = Math.max(0, options.retry?.maxRetries ?? 3);
  const random = options.random ?? Math.random;
  const policy =
    typeof options.policy === "object"
      ? options.policy
      : createPolicy(options.policy ?? "cache_aware", {
          sessionAffinity: options.sessionAffinity !== false,
          ...(options.cacheAware ? { cacheAware: options.cacheAware } : {}),
        });

  const secrets = new Set<string>();
  if (adminToken) secrets.add(adminToken);
  const log: Logger = createLogger({
    service: "llm-gateway",
    ...(options.logLevel ? { level: options.logLevel } : {}),
    destination: redactingDestination(
      secrets,
      options.logDestination ?? { write: (line: string) => void process.stdout.write(line) },
    ),
  });

  /** Per-request debug lines cost CPU even when dropped (their objects are built): built only at debug level. */
  const debug = log.isLevelEnabled("debug");
  const store = options.store;
  const ledger = new Ledger(options.prices ?? {}, undefined, store !== undefined);
  /** Runs whose stored usage was merged into the ledger (once per process), and loads in progress. */
  const loadedRuns = new Set<string>();
  const loadingRuns = new Map<string, Promise<void>>();
  /** Store revision of the last usage record applied per run. */
  const appliedRevisions = new Map<string, number>();
  /** Other processes' flushes of runs this process serves keep its view current (budgets across processes). */
  const stopWatch = store
    ? await store
        .watchUsage((stored) => {
          if (loadedRuns.has(stored.usage.runId)) applyStored(stored);
        })
        .catch((err: unknown) => {
          log.warn({ err: (err as Error).message }, "usage watch failed; views refresh on flush only");
          return undefined;
        })
    : undefined;
  const flushTimer = store
    ? setInterval(() => void flushUsage(), options.usageFlushMs ?? 1000).unref()
    : undefined;
  const admission = new AdmissionQueue(options.admission);
  const upstreams = new Map<string, Upstream>();
  let inflightClients = 0;
  let idleResolvers: (() => void)[] = [];

  const metrics: GatewayMetrics = createMetrics({
    queueDepth: () => admission.queued,
    refresh: () => {
      const now = Date.now();
      for (const u of upstreams.values()) {
        metrics.breakerState.set({ upstream: u.name }, breakerStateValue(u.breaker.state(now)));
        metrics.active.set({ upstream: u.name }, u.inflight);
      }
    },
  });

  function addUpstream(config: UpstreamConfig): Upstream {
    if (upstreams.has(config.name)) {
      throw new UpstreamError("duplicate_upstream", `upstream ${config.name} already exists`);
    }
    const u = new Upstream(config, options.breaker ?? {});
    if (u.apiKey) secrets.add(u.apiKey);
    u.breaker.onTransition = (from, to) => {
      metrics.breakerTransitions.inc({ upstream: u.name, to });
      metrics.breakerState.set({ upstream: u.name }, breakerStateValue(to));
      const level = to === "open" ? "warn" : "info";
      log[level]({ upstream: u.name, from, to }, "circuit breaker state changed");
    };
    upstreams.set(u.name, u);
    metrics.upstreamHealthy.set({ upstream: u.name }, 1);
    metrics.breakerState.set({ upstream: u.name }, 0);
    metrics.active.set({ upstream: u.name }, 0);
    return u;
  }

  function getUpstream(name: string): Upstream {
    const u = upstreams.get(name);
    if (u === undefined) throw new UpstreamError("unknown_upstream", `no upstream named ${name}`);
    return u;
  }

  async function removeUpstream(name: string): Promise<void> {
    const u = getUpstream(name);
    upstreams.delete(name);
    u.removed = true;
    policy.forget(name);
    log.info({ upstream: name, inflight: u.inflight }, "upstream removed; in-flight requests finish");
    await u.idle();
    await u.pool.destroy();
    for (const m of [metrics.upstreamHealthy, metrics.breakerState, metrics.active])
      m.remove({ upstream: name });
  }

  for (const c of options.upstreams) addUpstream(c);

  // ---- health checks --------------------------------------------------------------------------------------
  const health = options.health === false ? undefined : (options.health ?? {});
  let healthTimer: NodeJS.Timeout | undefined;
  let closed = false;

  /**
   * GET on an upstream's pool with a deadline (ms) for the whole answer; the provider key is added when `withKey`.
   * Resolves undefined on a connection error or timeout.
   */
  async function getFrom(
    u: Upstream,
    path: string,
    withKey: boolean,
    timeoutMs: number,
  ): Promise<{ status: number; headers: OutgoingHttpHeaders; body: Buffer } | undefined> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (withKey && u.apiKey) headers.authorization = `Bearer ${u.apiKey}`;
    try {
      const r = await u.pool.request({
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

  async function checkOnce(u: Upstream, h: HealthCheckOptions): Promise<boolean> {
    const path = h.mode === "models" ? u.pathOf("models") : "/health";
    const r = await getFrom(u, path, h.mode === "models", h.timeoutMs ?? 2000);
    return r !== undefined && r.status >= 200 && r.status < 300;
  }

  async function runHealthChecks(h: HealthCheckOptions): Promise<void> {
    await Promise.all(
      [...upstreams.values()].map(async (u) => {
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

  function scheduleHealth(h: HealthCheckOptions, delay: number): void {
    if (closed) return;
    healthTimer = setTimeout(() => {
      runHealthChecks(h).finally(() => scheduleHealth(h, h.intervalMs ?? 5000));
    }, delay);
    healthTimer.unref();
  }
  if (health) scheduleHealth(health, 0);

  // ---- routing ----------------------------------------------------------------------------------------------
  /** Eligible upstreams serving `model`, preferring ones not in `exclude` (already tried). */
  function candidates(now: number, exclude: ReadonlySet<string>, model?: string): Upstream[] {
    const all: Upstream[] = [];
    const fresh: Upstream[] = [];
    for (const u of upstreams.values()) {
      if (!u.eligible(now) || !u.serves(model)) continue;
      all.push(u);
      if (!exclude.has(u.name)) fresh.push(u);
    }
    return fresh.length > 0 ? fresh : all;
  }

  function toCandidate(u: Upstream): Candidate {
    return { name: u.name, weight: u.weight, load: u.inflight };
  }

  function account(grant: Grant, model: string, usage: UsageCounts | undefined): void {
    if (usage === undefined) return;
    const cost = ledger.record(grant, model, usage);
    const role = grant.role ?? "unknown";
    metrics.tokens.inc({ model, role, type: "prompt" }, usage.promptTokens);
    metrics.tokens.inc({ model, role, type: "completion" }, usage.completionTokens);
    metrics.tokens.inc({ model, role, type: "cached" }, usage.cachedTokens);
    if (cost > 0) metrics.cost.inc({ model, role }, cost);
  }

  interface ChatContext {
    req: IncomingMessage;
    res: ServerResponse;
    /** `performance.now()` when the request arrived. */
    t0: number;
    /** Gateway time before the first attempt was sent (ms), for the overhead header. */
    overheadMs: number;
    grant: Grant;
    view: ChatBodyView;
    body: Buffer;
    strip: boolean;
    signal: AbortSignal;
    deadline: number;
  }

  /**
   * One attempt on one upstream over its undici pool. Resolves "done" once the client got its answer (or left),
   * "retry" when the attempt failed before any byte reached the client.
   */
  function attempt(u: Upstream, ctx: ChatContext): Promise<AttemptResult> {
    const { res, view } = ctx;
    return new Promise<AttemptResult>((resolve) => {
      u.begin();
      let settled = false;
      let committed = false;
      let timer: NodeJS.Timeout | undefined;
      let controller: Dispatcher.DispatchController | undefined;
      const cancel = (why: string) => {
        if (controller && !controller.aborted) controller.abort(new Error(why));
      };
      const settle = (result: AttemptResult, outcome: BreakerOutcome) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        ctx.signal.removeEventListener("abort", onAbort);
        u.end();
        u.breaker.record(outcome, Date.now());
        resolve(result);
      };
      // Settle before cancelling: undici reports the abort synchronously through onResponseError.
      const onAbort = () => {
        settle({ kind: "done" }, "neutral");
        cancel("client request ended");
        if (committed && !res.writableEnded) res.destroy();
      };
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      const remaining = Math.max(1, Math.min(firstByteTimeoutMs, ctx.deadline - Date.now()));
      timer = setTimeout(() => {
        if (committed) return;
        metrics.requests.inc({ upstream: u.name, status: "timeout" });
        settle({ kind: "retry", reason: "timeout" }, "failure");
        cancel("first byte timeout");
      }, remaining);

      const headers: Record<string, string> = {
        "content-type": "application/json",
        "content-length": String(ctx.body.length),
        accept: view.stream ? "text/event-stream" : "application/json",
      };
      if (u.apiKey) headers.authorization = `Bearer ${u.apiKey}`;

      let status = 0;
      let upstreamHeaders: OutgoingHttpHeaders = {};
      let tap: SseUsageTap | undefined;
      const chunks: Buffer[] = [];
      const commitStream = () => {
        committed = true;
        if (timer) clearTimeout(timer);
        timer = undefined;
        res.writeHead(200, {
          ...upstreamHeaders,
          [UPSTREAM_HEADER]: u.name,
          [OVERHEAD_HEADER]: ctx.overheadMs.toFixed(3),
        });
        metrics.ttft.observe({ upstream: u.name }, (performance.now() - ctx.t0) / 1000);
      };
      const served = (stream: boolean, usage: UsageCounts | undefined) => {
        const ms = performance.now() - ctx.t0;
        metrics.duration.observe({ upstream: u.name, stream: String(stream) }, ms / 1000);
        metrics.responses.inc({ status: String(status), stream: String(stream) });
        if (status === 200) account(ctx.grant, view.model ?? "unknown", usage);
        if (debug) log.debug({ upstream: u.name, status, stream, ms, usage }, "request served");
      };

      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(c) {
          controller = c;
          if (settled) c.abort(new Error("attempt already settled"));
        },
        onResponseStart(_c, statusCode, h) {
          status = statusCode;
          metrics.requests.inc({ upstream: u.name, status: String(status) });
          upstreamHeaders = forwardHeaders(h);
          if (status === 200 && view.stream) tap = new SseUsageTap(ctx.strip);
        },
        onResponseData(c, chunk) {
          if (settled) return;
          if (tap === undefined) {
            // Non-streaming answer, or an error status: buffered whole (a failure before its end is retryable).
            chunks.push(chunk);
            return;
          }
          const out = tap.push(chunk);
          if (out.length === 0) return;
          if (!committed) commitStream();
          if (!res.write(out)) {
            c.pause();
            res.once("drain", () => c.resume());
          }
        },
        onResponseEnd() {
          if (settled) return;
          if (tap !== undefined) {
            const rest = tap.flush();
            if (!committed) {
              if (rest.length === 0) {
                settle({ kind: "retry", reason: "empty_stream" }, "failure");
                return;
              }
              commitStream();
            }
            res.end(rest);
            served(true, tap.usage);
            settle({ kind: "done" }, "success");
            return;
          }
          const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          if (isRetryableStatus(status)) {
            settle(
              {
                kind: "retry",
                reason: String(status),
                response: { status, headers: upstreamHeaders, body },
              },
              status === 429 ? "neutral" : "failure",
            );
            return;
          }
          committed = true;
          res.writeHead(status, {
            ...upstreamHeaders,
            "content-length": body.length,
            [UPSTREAM_HEADER]: u.name,
            [OVERHEAD_HEADER]: ctx.overheadMs.toFixed(3),
          });
          res.end(body);
          metrics.ttft.observe({ upstream: u.name }, (performance.now() - ctx.t0) / 1000);
          served(view.stream, status === 200 ? usageFromBody(body) : undefined);
          settle({ kind: "done" }, status < 400 ? "success" : "neutral");
        },
        onResponseError(_c, err) {
          if (settled) return;
          if (!committed) {
            if (status === 0) {
              metrics.requests.inc({ upstream: u.name, status: "error" });
              if (debug) log.debug({ upstream: u.name, err: err.message }, "upstream connection error");
              settle({ kind: "retry", reason: "connect" }, "failure");
            } else {
              // The upstream went away mid-response, before anything reached the client.
              settle({ kind: "retry", reason: "dropped" }, "failure");
            }
            return;
          }
          log.warn(
            { upstream: u.name, ms: performance.now() - ctx.t0, err: err.message },
            "upstream dropped a stream after its first byte",
          );
          metrics.responses.inc({ status: "502", stream: "true" });
          res.destroy();
          settle({ kind: "done" }, "failure");
        },
      };
      try {
        u.pool.dispatch({ path: u.chatPath, method: "POST", headers, body: ctx.body }, handler);
      } catch (err) {
        metrics.requests.inc({ upstream: u.name, status: "error" });
        log.warn({ upstream: u.name, err: (err as Error).message }, "upstream dispatch failed");
        settle({ kind: "retry", reason: "connect" }, "failure");
      }
    });
  }

  async function dispatch(ctx: ChatContext, input: RouteInput): Promise<void> {
    const tried = new Set<string>();
    let last: AttemptResult | undefined;
    let attempts = 0;
    for (let n = 0; n <= maxRetries; n++) {
      if (ctx.signal.aborted) return;
      const now = Date.now();
      const pool = candidates(now, tried, ctx.view.model);
      if (pool.length === 0) break;
      const decision = policy.pick(pool.map(toCandidate), input);
      const u = decision ? upstreams.get(decision.name) : undefined;
      if (decision === undefined || u === undefined) break;
      if (!u.breaker.tryAcquire(now)) {
        tried.add(u.name);
        continue;
      }
      policy.record(u.name, input);
      metrics.decisions.inc({ policy: policy.name, reason: decision.reason });
      if (decision.reason === "cache_hit") metrics.cacheHits.inc();
      else if (decision.reason === "cache_miss" || decision.reason === "load_imbalance")
        metrics.cacheMisses.inc();
      if (attempts === 0) {
        ctx.overheadMs = performance.now() - ctx.t0;
        metrics.overhead.observe(ctx.overheadMs / 1000);
      }
      attempts++;
      tried.add(u.name);
      const result = await attempt(u, ctx);
      if (result.kind === "done") return;
      last = result;
      if (n === maxRetries) break;
      const delay = backoffDelay(n, options.retry ?? {}, random);
      if (Date.now() + delay >= ctx.deadline) break;
      metrics.retries.inc({ upstream: u.name, reason: result.reason });
      log.debug(
        { upstream: u.name, reason: result.reason, retry: n + 1, delayMs: Math.round(delay) },
        "retrying",
      );
      try {
        await sleep(delay, undefined, { signal: ctx.signal });
      } catch {
        return;
      }
    }
    if (ctx.signal.aborted || ctx.res.headersSent) return;
    const stream = String(ctx.view.stream);
    if (attempts === 0) {
      metrics.rejected.inc({ reason: "no_upstream" });
      metrics.responses.inc({ status: "503", stream });
      sendError(ctx.res, 503, "no_upstream_available", "no healthy upstream is available", {
        headers: { "retry-after": "1" },
      });
      return;
    }
    metrics.retriesExhausted.inc();
    if (last?.kind === "retry" && last.response) {
      const r = last.response;
      metrics.responses.inc({ status: String(r.status), stream });
      ctx.res.writeHead(r.status, { ...r.headers, "content-length": r.body.length });
      ctx.res.end(r.body);
      return;
    }
    const timeout = last?.kind === "retry" && last.reason === "timeout";
    metrics.responses.inc({ status: timeout ? "504" : "502", stream });
    sendError(
      ctx.res,
      timeout ? 504 : 502,
      timeout ? "upstream_timeout" : "upstream_unavailable",
      timeout
        ? `no upstream answered in time after ${attempts} attempt(s)`
        : `every upstream attempt failed (${attempts} attempt(s), last: ${last?.kind === "retry" ? last.reason : "unknown"})`,
    );
  }

  /**
   * The grant of a token: memory first, then the store (a token issued before a restart). An expired grant is
   * forgotten (and deleted from the store, best effort) and reported as `"expired"`.
   */
  async function grantOf(token: string): Promise<Grant | "expired" | undefined> {
    const hash = hashToken(token);
    let grant = ledger.grantOf(hash);
    if (grant === undefined && store !== undefined) {
      try {
        const stored = await store.getGrant(hash);
        if (stored !== undefined) grant = ledger.putGrant(hash, stored);
      } catch (err) {
        log.warn({ err: (err as Error).message }, "token store lookup failed");
      }
    }
    if (grant?.expiresAt !== undefined && Date.now() >= grant.expiresAt) {
      ledger.dropGrant(hash);
      store?.deleteGrant(hash).catch(() => undefined);
      return "expired";
    }
    return grant;
  }

  async function authenticate(req: IncomingMessage, res: ServerResponse): Promise<Grant | undefined> {
    const token = bearerToken(req.headers);
    const found = token === undefined ? undefined : await grantOf(token);
    if (found !== undefined && found !== "expired") return found;
    if (auth === "open") return ANONYMOUS;
    metrics.rejected.inc({ reason: "unauthorized" });
    sendError(
      res,
      401,
      "invalid_api_key",
      token === undefined
        ? "missing bearer token: send Authorization: Bearer <token issued by POST /admin/tokens>"
        : found === "expired"
          ? "expired gateway token"
          : "unknown or revoked gateway token",
    );
    return undefined;
  }

  /**
   * Takes a stored usage record as this process's view of the run (plus its unflushed usage), unless a newer
   * revision was applied already (records from flushes, loads and the watch arrive in any order).
   */
  function applyStored(stored: StoredUsage): void {
    const runId = stored.usage.runId;
    if ((appliedRevisions.get(runId) ?? 0) >= stored.revision) return;
    appliedRevisions.set(runId, stored.revision);
    ledger.applyStored(stored.usage);
  }

  /** Loads a run's stored usage once per process, before its first budget check. */
  function ensureRunLoaded(runId: string): Promise<void> | undefined {
    if (store === undefined || loadedRuns.has(runId)) return undefined;
    let p = loadingRuns.get(runId);
    if (p === undefined) {
      const st = store;
      p = (async () => {
        try {
          const stored = await st.getUsage(runId);
          if (stored) applyStored(stored);
          loadedRuns.add(runId);
        } catch (err) {
          log.warn({ runId, err: (err as Error).message }, "usage store read failed; counting from memory");
        } finally {
          loadingRuns.delete(runId);
        }
      })();
      loadingRuns.set(runId, p);
    }
    return p;
  }

  /**
   * Adds the usage recorded since the last flush to each run's stored record (compare-and-set, so several
   * gateways can share the store) and takes the result as this process's view of the run.
   */
  async function flushUsage(): Promise<void> {
    if (store === undefined) return;
    await Promise.all(
      ledger.pendingRuns().map(async (runId) => {
        const delta = ledger.takePending(runId);
        if (delta === undefined) return;
        try {
          applyStored(await store.addUsage(delta));
        } catch (err) {
          ledger.returnPending(delta);
          log.warn({ runId, err: (err as Error).message }, "usage store write failed; will retry");
        }
      }),
    );
  }

  function refuseBudget(res: ServerResponse, grant: Grant, refusal: BudgetRefusal, stream: boolean): void {
    metrics.budgetRejections.inc({ scope: refusal.scope });
    metrics.responses.inc({ status: "429", stream: String(stream) });
    const who =
      refusal.scope === "task" ? `task ${grant.taskId} of run ${grant.runId}` : `run ${grant.runId}`;
    log.info({ runId: grant.runId, taskId: grant.taskId, ...refusal }, "request refused: budget");
    if (refusal.reservedTokens === 0) {
      sendError(
        res,
        429,
        "budget_exceeded",
        `token budget exceeded for ${who}: used ${refusal.usedTokens} of ${refusal.budgetTokens} tokens`,
        { type: "budget_exceeded", headers: { "x-should-retry": "false" } },
      );
      return;
    }
    sendError(
      res,
      429,
      "budget_reserved",
      `token budget of ${who} is held by its requests in flight: used ${refusal.usedTokens} + about ${refusal.reservedTokens} in flight of ${refusal.budgetTokens} tokens; retry when they finish`,
      { type: "budget_exceeded", headers: { "retry-after": "1" } },
    );
  }

  async function chat(req: IncomingMessage, res: ServerResponse, t0: number): Promise<void> {
    const token = await authenticate(req, res);
    if (token === undefined) return;
    let grant = token;
    const runHeader = req.headers[RUN_ID_HEADER];
    if (token.anyRun && typeof runHeader === "string" && runHeader !== "") {
      if (!RunId.safeParse(runHeader).success) {
        sendError(
          res,
          400,
          "invalid_request",
          `${RUN_ID_HEADER}: not a run id: ${JSON.stringify(runHeader.slice(0, 80))}`,
        );
        return;
      }
      grant = { runId: runHeader, ...(token.role !== undefined ? { role: token.role } : {}) };
    }
    const raw = await readBody(req, maxBodyBytes);
    if (raw === undefined) {
      sendError(res, 413, "request_too_large", `request body exceeds ${maxBodyBytes} bytes`);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString("utf8"));
    } catch (err) {
      sendError(res, 400, "invalid_json", `request body is not valid JSON: ${(err as Error).message}`);
      return;
    }
    const view = viewChatBody(parsed);
    if (view === undefined) {
      sendError(res, 400, "invalid_request", "invalid chat completion request: messages must be an array");
      return;
    }
    if (view.model !== undefined && upstreams.size > 0 && !servedAnywhere(view.model)) {
      metrics.responses.inc({ status: "404", stream: String(view.stream) });
      sendError(
        res,
        404,
        "model_not_found",
        `model ${JSON.stringify(view.model)} is not served by this gateway (models: ${[...configuredModels().ids].join(", ")})`,
      );
      return;
    }
    const loading = ensureRunLoaded(grant.runId);
    if (loading) await loading;
    // Estimated size of this request (≈ 4 bytes per prompt token, plus the completion cap it asked for).
    const estimate = Math.ceil(raw.length / 4) + (view.maxTokens ?? 0);
    const admitted = ledger.admit(grant, estimate);
    if (!("tokens" in admitted)) {
      refuseBudget(res, grant, admitted, view.stream);
      return;
    }
    try {
      await serve(req, res, t0, grant, view, parsed, raw);
    } finally {
      ledger.release(admitted satisfies Reservation);
    }
  }

  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    t0: number,
    grant: Grant,
    view: ChatBodyView,
    parsed: unknown,
    raw: Buffer,
  ): Promise<void> {
    let body = raw;
    let strip = false;
    if (view.stream && !view.includeUsage) {
      // Ask the upstream for usage so the gateway can count tokens; the tap removes that chunk again.
      const obj = parsed as Record<string, unknown>;
      const so = obj.stream_options && typeof obj.stream_options === "object" ? obj.stream_options : {};
      obj.stream_options = { ...so, include_usage: true };
      body = Buffer.from(JSON.stringify(obj));
      strip = true;
    }
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on("close", onClose);
    const admission_ = await admission.acquire(abort.signal);
    if (!admission_.ok) {
      if (admission_.reason === "aborted") return;
      metrics.rejected.inc({ reason: admission_.reason });
      metrics.responses.inc({ status: "429", stream: String(view.stream) });
      sendError(
        res,
        429,
        admission_.reason,
        admission_.reason === "queue_full"
          ? "gateway queue is full, retry later"
          : "timed out waiting in the gateway queue",
        { headers: { "retry-after": "1" } },
      );
      return;
    }
    const deadline = Date.now() + requestTimeoutMs;
    const deadlineTimer = setTimeout(() => abort.abort(), requestTimeoutMs);
    deadlineTimer.unref();
    try {
      const header = req.headers[TASK_ID_HEADER];
      const taskKey = typeof header === "string" && header !== "" ? header : grant.taskId;
      const input: RouteInput = {
        affinityKey: taskKey === undefined ? undefined : `${grant.runId}/${taskKey}`,
        prefixText: view.prefixText,
      };
      await dispatch(
        { req, res, t0, overheadMs: 0, grant, view, body, strip, signal: abort.signal, deadline },
        input,
      );
      if (abort.signal.aborted && !res.headersSent && !res.destroyed) {
        metrics.responses.inc({ status: "504", stream: String(view.stream) });
        sendError(res, 504, "gateway_timeout", `request exceeded ${requestTimeoutMs} ms`);
      }
    } finally {
      clearTimeout(deadlineTimer);
      admission_.release();
    }
  }

  /** Whether some upstream (eligible or not) serves `model`. */
  function servedAnywhere(model: string): boolean {
    for (const u of upstreams.values()) if (u.serves(model)) return true;
    return false;
  }

  /** Models named in upstream configs, and whether some upstream (without a list) serves any model. */
  function configuredModels(): { ids: Set<string>; open: boolean } {
    const ids = new Set<string>();
    let open = false;
    for (const u of upstreams.values()) {
      if (u.models === undefined) open = true;
      else for (const m of u.models) ids.add(m);
    }
    return { ids, open };
  }

  const modelObject = (id: string) => ({ id, object: "model", created: 0, owned_by: "longshot-llm-gateway" });

  /**
   * `GET /v1/models[/{id}]`: the models named in upstream configs, plus what an upstream without a model list
   * answers (passed through when no upstream names its models).
   */
  async function models(res: ServerResponse, path: string): Promise<void> {
    const { ids: configured, open } = configuredModels();
    const id = path.startsWith("models/") ? decodeURIComponent(path.slice("models/".length)) : undefined;
    if (configured.size === 0) return passthroughGet(res, path, undefined);
    if (id !== undefined) {
      if (configured.has(id)) return sendJson(res, 200, modelObject(id));
      if (open) return passthroughGet(res, path, undefined);
      return sendError(
        res,
        404,
        "model_not_found",
        `model ${JSON.stringify(id)} is not served by this gateway`,
      );
    }
    const data = [...configured].map(modelObject);
    if (open) {
      const any = candidates(Date.now(), new Set()).find((u) => u.models === undefined);
      const listed = any ? await getFrom(any, any.pathOf("models"), true, firstByteTimeoutMs) : undefined;
      if (listed && listed.status === 200) {
        try {
          const more = (JSON.parse(listed.body.toString("utf8")) as { data?: { id?: unknown }[] }).data ?? [];
          for (const m of more) {
            if (typeof m.id === "string" && !configured.has(m.id)) data.push(modelObject(m.id));
          }
        } catch {
          // an unparsable list adds nothing
        }
      }
    }
    sendJson(res, 200, { object: "list", data });
  }

  /** GET passthrough (`/v1/models…`): tries each eligible upstream (serving `model`, when given) once. */
  async function passthroughGet(res: ServerResponse, path: string, model: string | undefined): Promise<void> {
    for (const u of candidates(Date.now(), new Set(), model)) {
      const result = await getFrom(u, u.pathOf(path), true, firstByteTimeoutMs);
      if (result === undefined || result.status >= 500) continue;
      res.writeHead(result.status, {
        ...result.headers,
        "content-length": result.body.length,
        [UPSTREAM_HEADER]: u.name,
      });
      res.end(result.body);
      return;
    }
    sendError(res, 503, "no_upstream_available", "no healthy upstream is available", {
      headers: { "retry-after": "1" },
    });
  }

  // ---- admin ------------------------------------------------------------------------------------------------
  async function readJson(req: IncomingMessage): Promise<unknown> {
    const raw = await readBody(req, 1024 * 1024);
    if (raw === undefined || raw.length === 0) return {};
    return JSON.parse(raw.toString("utf8"));
  }

  const upstreamAdmin: UpstreamAdmin = {
    list: () => [...upstreams.values()].map((u) => u.info(Date.now())),
    add(config) {
      const u = addUpstream(config);
      log.info({ upstream: u.name, endpoint: u.endpoint, weight: u.weight }, "upstream added");
      return u.info(Date.now());
    },
    remove: removeUpstream,
    async drain(name) {
      const u = getUpstream(name);
      u.mode = "draining";
      log.info({ upstream: name, inflight: u.inflight }, "upstream draining");
      await u.idle();
    },
    resume(name) {
      getUpstream(name).mode = "active";
      log.info({ upstream: name }, "upstream resumed");
    },
  };

  async function admin(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    method: string,
  ): Promise<void> {
    const token = bearerToken(req.headers);
    if (adminToken === undefined) {
      sendError(res, 403, "admin_disabled", "the admin API is disabled: set GATEWAY_ADMIN_TOKEN");
      return;
    }
    if (token === undefined || !safeEqual(token, adminToken)) {
      sendError(
        res,
        401,
        "invalid_admin_token",
        "admin endpoints need Authorization: Bearer <GATEWAY_ADMIN_TOKEN>",
      );
      return;
    }
    let body: unknown;
    try {
      body = method === "POST" || method === "DELETE" ? await readJson(req) : undefined;
    } catch (err) {
      sendError(res, 400, "invalid_json", `request body is not valid JSON: ${(err as Error).message}`);
      return;
    }
    try {
      if (path === "/admin/upstreams") {
        if (method === "GET") return sendJson(res, 200, { upstreams: upstreamAdmin.list() });
        if (method === "POST") {
          const p = AddUpstreamBody.safeParse(body);
          if (!p.success) return sendError(res, 400, "invalid_upstream", issuesText(p.error));
          return sendJson(res, 201, upstreamAdmin.add(p.data));
        }
      }
      const m = /^\/admin\/upstreams\/([^/]+)(\/drain|\/resume)?$/.exec(path);
      if (m) {
        const name = decodeURIComponent(m[1]!);
        const action = m[2];
        if (action === undefined && method === "GET")
          return sendJson(res, 200, getUpstream(name).info(Date.now()));
        if (action === undefined && method === "DELETE") {
          const inflight = getUpstream(name).inflight;
          const done = upstreamAdmin.remove(name);
          if (new URL(req.url ?? "/", "http://x").searchParams.get("wait") === "true") await done;
          return sendJson(res, 200, { name, removed: true, inflightAtRemoval: inflight });
        }
        if (action === "/drain" && method === "POST") {
          const done = upstreamAdmin.drain(name);
          if (new URL(req.url ?? "/", "http://x").searchParams.get("wait") === "true") await done;
          return sendJson(res, 200, getUpstream(name).info(Date.now()));
        }
        if (action === "/resume" && method === "POST") {
          upstreamAdmin.resume(name);
          return sendJson(res, 200, getUpstream(name).info(Date.now()));
        }
      }
      if (path === "/admin/tokens" && method === "POST") {
        const p = IssueTokenBody.safeParse(body);
        if (!p.success) return sendError(res, 400, "invalid_request", issuesText(p.error));
        const { ttlMs, ...rest } = p.data;
        const grant: Grant = ttlMs === undefined ? rest : { ...rest, expiresAt: Date.now() + ttlMs };
        let token: string;
        try {
          token = await issue(grant);
        } catch (err) {
          log.error({ err: (err as Error).message }, "token store write failed; token not issued");
          return sendError(res, 503, "store_unavailable", "could not store the token; retry");
        }
        log.info(
          {
            runId: grant.runId,
            taskId: grant.taskId,
            budgetTokens: grant.budgetTokens,
            expiresAt: grant.expiresAt,
          },
          "token issued",
        );
        return sendJson(res, 201, { token, ...grant });
      }
      if (path === "/admin/tokens" && method === "DELETE") {
        const t = (body as { token?: unknown } | undefined)?.token;
        if (typeof t !== "string") return sendError(res, 400, "invalid_request", "body must be {token}");
        const hash = hashToken(t);
        let known = ledger.dropGrant(hash);
        if (store) {
          try {
            known ||= (await store.getGrant(hash)) !== undefined;
            await store.deleteGrant(hash);
          } catch (err) {
            log.error({ err: (err as Error).message }, "token store delete failed");
            return sendError(res, 503, "store_unavailable", "could not revoke the token in the store; retry");
          }
        }
        return known
          ? sendJson(res, 200, { revoked: true })
          : sendError(res, 404, "unknown_token", "unknown token");
      }
      if (path === "/admin/usage" && method === "GET") {
        const runId = new URL(req.url ?? "/", "http://x").searchParams.get("runId") ?? undefined;
        return sendJson(res, 200, { runs: await usageOf(runId) });
      }
      sendError(res, 404, "not_found", `unknown admin route ${method} ${path}`);
    } catch (err) {
      if (err instanceof UpstreamError) {
        sendError(
          res,
          err.code === "unknown_upstream" ? 404 : err.code === "duplicate_upstream" ? 409 : 400,
          err.code,
          err.message,
        );
        return;
      }
      throw err;
    }
  }

  async function usageOf(runId?: string): Promise<RunUsage[]> {
    if (runId === undefined) return ledger.allUsage();
    await ensureRunLoaded(runId);
    const u = ledger.usage(runId);
    return u ? [u] : [];
  }

  /** Issues a token; with a store, the grant is stored before the token is handed out. */
  async function issue(grant: Grant): Promise<string> {
    const token = ledger.issue(grant);
    if (store) {
      const hash = hashToken(token);
      try {
        await store.putGrant(hash, ledger.grantOf(hash)!);
      } catch (err) {
        ledger.dropGrant(hash);
        throw err;
      }
    }
    return token;
  }

  // ---- server -----------------------------------------------------------------------------------------------
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const method = req.method ?? "GET";
    if (path === "/v1/chat/completions") {
      if (method !== "POST") return sendError(res, 405, "method_not_allowed", `use POST on ${path}`);
      return chat(req, res, t0);
    }
    if (path === "/v1/models" || path.startsWith("/v1/models/")) {
      if (method !== "GET") return sendError(res, 405, "method_not_allowed", `use GET on ${path}`);
      if ((await authenticate(req, res)) === undefined) return;
      return models(res, path.slice("/v1/".length));
    }
    if (path === "/healthz" || path === "/readyz") {
      const now = Date.now();
      const list = [...upstreams.values()];
      const eligible = list.filter((u) => u.eligible(now)).length;
      const ready = eligible > 0;
      return sendJson(res, path === "/readyz" && !ready ? 503 : 200, {
        status: ready ? "ok" : "degraded",
        upstreams: { total: list.length, eligible },
      });
    }
    if (path === "/metrics" && method === "GET") {
      const text = await metrics.registry.metrics();
      res.writeHead(200, {
        "content-type": metrics.registry.contentType,
        "content-length": Buffer.byteLength(text),
      });
      res.end(text);
      return;
    }
    if (path.startsWith("/admin/")) return admin(req, res, path, method);
    sendError(res, 404, "not_found", `unknown route ${method} ${path}`);
  }

  const server: Server = createServer((req, res) => {
    inflightClients++;
    res.once("close", () => {
      inflightClients--;
      if (inflightClients === 0) {
        const r = idleResolvers;
        idleResolvers = [];
        for (const f of r) f();
      }
    });
    handle(req, res).catch((err: unknown) => {
      log.error({ err: (err as Error).message }, "internal error");
      if (!res.headersSent) sendError(res, 500, "internal_error", "llm-gateway internal error");
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 120_000; // receiving a request body; responses (streams) are not bounded by it

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const url = `http://${urlHost}:${port}/v1`;
  log.info(
    {
      url,
      policy: policy.name,
      auth,
      upstreams: [...upstreams.keys()],
      maxRetries,
      health: health !== undefined,
    },
    "llm-gateway listening",
  );

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    policy,
    upstreams: upstreamAdmin,
    issueToken: issue,
    usage: usageOf,
    metricsText: () => metrics.registry.metrics(),
    close(graceMs = 0) {
      closing ??= (async () => {
        closed = true;
        if (healthTimer) clearTimeout(healthTimer);
        if (flushTimer) clearInterval(flushTimer);
        stopWatch?.();
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        if (graceMs > 0 && inflightClients > 0) {
          await Promise.race([
            new Promise<void>((r) => idleResolvers.push(r)),
            sleep(graceMs, undefined, { ref: false }),
          ]);
        }
        server.closeAllConnections();
        await stopped;
        await flushUsage();
        await Promise.all([...upstreams.values()].map((u) => u.pool.destroy()));
      })();
      return closing;
    },
  };
}
