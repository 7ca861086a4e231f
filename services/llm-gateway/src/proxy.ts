import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { Dispatcher } from "undici";
import type { GatewayContext } from "./context.ts";
import { exhaustedAnswer, NO_UPSTREAM_ANSWER } from "./domain/answers.ts";
import { backoffDelay, isRetryableStatus } from "./domain/backoff.ts";
import type { BreakerOutcome } from "./domain/breaker.ts";
import type { Grant } from "./domain/ledger.ts";
import type { Candidate, RouteInput } from "./domain/policy.ts";
import type { ChatBodyView } from "./domain/prompt.ts";
import { SseUsageTap, type UsageCounts, usageFromBody } from "./domain/sse.ts";
import { forwardHeaders, OVERHEAD_HEADER, sendAnswer, UPSTREAM_HEADER } from "./http-util.ts";
import type { BufferedResponse, Upstream } from "./upstreams.ts";

/** One admitted chat-completions request on its way upstream. */
export interface ProxyRequest {
  res: ServerResponse;
  /** `performance.now()` when the request arrived. */
  t0: number;
  /** Gateway time before the first attempt was sent (ms), for the overhead header; set by {@link proxyChat}. */
  overheadMs: number;
  /** Who the usage is accounted to. */
  grant: Grant;
  /** What the gateway reads of the body (model, stream flag, prompt text). */
  view: ChatBodyView;
  /** The body sent upstream (the client's bytes, or re-encoded with usage asked for). */
  body: Buffer;
  /** Whether the usage-only SSE event the gateway asked for is removed before the client sees the stream. */
  strip: boolean;
  /** Aborted when the client leaves or the request deadline passes. */
  signal: AbortSignal;
  /** Deadline of the whole request (epoch ms). */
  deadline: number;
}

/**
 * Outcome of one attempt: `done` once the client got its answer (or left); `retry` when it failed before any byte
 * reached the client, with the upstream's answer when there was one (relayed if no retry succeeds).
 */
type AttemptResult = { kind: "done" } | { kind: "retry"; reason: string; response?: BufferedResponse };

const toCandidate = (u: Upstream): Candidate => ({ name: u.name, weight: u.weight, load: u.inflight });

/**
 * Serves an admitted chat-completions request: routes it with the policy among eligible upstreams serving its
 * model, sends it, and retries (preferring upstreams not tried yet, with backoff) while no byte reached the client,
 * up to `maxRetries` and the request deadline. Answers the client in every case: the upstream's answer, the last
 * retryable upstream answer, or 503 / 502 / 504 (see `domain/answers.ts`). Resolves when the request is over;
 * never rejects for upstream failures.
 */
export async function proxyChat(ctx: GatewayContext, pr: ProxyRequest, input: RouteInput): Promise<void> {
  const { metrics, policy, settings } = ctx;
  const tried = new Set<string>();
  let last: Extract<AttemptResult, { kind: "retry" }> | undefined;
  let attempts = 0;
  for (let n = 0; n <= settings.maxRetries; n++) {
    if (pr.signal.aborted) return;
    const now = Date.now();
    const pool = ctx.upstreams.candidates(now, tried, pr.view.model);
    if (pool.length === 0) break;
    const decision = policy.pick(pool.map(toCandidate), input);
    const u = decision ? ctx.upstreams.find(decision.name) : undefined;
    if (decision === undefined || u === undefined) break;
    if (!u.breaker.tryAcquire(now)) {
      tried.add(u.name);
      continue;
    }
    policy.record(u.name, input);
    metrics.decisions.inc({ policy: policy.name, reason: decision.reason });
    if (attempts === 0) {
      pr.overheadMs = performance.now() - pr.t0;
      metrics.overhead.observe(pr.overheadMs / 1000);
    }
    attempts++;
    tried.add(u.name);
    const result = await attempt(ctx, u, pr);
    if (result.kind === "done") return;
    last = result;
    if (n === settings.maxRetries) break;
    const delay = backoffDelay(n, settings.backoff, settings.random);
    if (Date.now() + delay >= pr.deadline) break;
    metrics.retries.inc({ upstream: u.name, reason: result.reason });
    ctx.log.debug(
      { upstream: u.name, reason: result.reason, retry: n + 1, delayMs: Math.round(delay) },
      "retrying",
    );
    try {
      await sleep(delay, undefined, { signal: pr.signal });
    } catch {
      return;
    }
  }
  if (pr.signal.aborted || pr.res.headersSent) return;
  const stream = String(pr.view.stream);
  if (attempts === 0) {
    metrics.rejected.inc({ reason: "no_upstream" });
    metrics.responses.inc({ status: "503", stream });
    sendAnswer(pr.res, NO_UPSTREAM_ANSWER);
    return;
  }
  metrics.retriesExhausted.inc();
  if (last?.response) {
    const r = last.response;
    metrics.responses.inc({ status: String(r.status), stream });
    pr.res.writeHead(r.status, { ...r.headers, "content-length": r.body.length });
    pr.res.end(r.body);
    return;
  }
  const answer = exhaustedAnswer(attempts, last?.reason);
  metrics.responses.inc({ status: String(answer.status), stream });
  sendAnswer(pr.res, answer);
}

/**
 * One attempt on one upstream over its undici pool: streams are relayed as they come (committed to the client on
 * the first upstream body byte, usage read from the SSE on the way), other answers are buffered whole. Counts the
 * upstream's in-flight request and records the breaker outcome. Resolves "done" once the client got its answer (or
 * left), "retry" when the attempt failed before any byte reached the client. Never rejects.
 */
function attempt(ctx: GatewayContext, u: Upstream, pr: ProxyRequest): Promise<AttemptResult> {
  const { metrics, log, debug } = ctx;
  const { res, view } = pr;
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
      pr.signal.removeEventListener("abort", onAbort);
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
    pr.signal.addEventListener("abort", onAbort, { once: true });
    const remaining = Math.max(1, Math.min(ctx.settings.firstByteTimeoutMs, pr.deadline - Date.now()));
    timer = setTimeout(() => {
      if (committed) return;
      metrics.requests.inc({ upstream: u.name, status: "timeout" });
      settle({ kind: "retry", reason: "timeout" }, "failure");
      cancel("first byte timeout");
    }, remaining);

    const headers: Record<string, string> = {
      "content-type": "application/json",
      "content-length": String(pr.body.length),
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
        [OVERHEAD_HEADER]: pr.overheadMs.toFixed(3),
      });
      metrics.ttft.observe({ upstream: u.name }, (performance.now() - pr.t0) / 1000);
    };
    const served = (stream: boolean, usage: UsageCounts | undefined) => {
      const ms = performance.now() - pr.t0;
      metrics.duration.observe({ upstream: u.name, stream: String(stream) }, ms / 1000);
      metrics.responses.inc({ status: String(status), stream: String(stream) });
      if (status === 200) ctx.accounts.account(pr.grant, view.model ?? "unknown", usage);
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
        if (status === 200 && view.stream) tap = new SseUsageTap(pr.strip);
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
          [OVERHEAD_HEADER]: pr.overheadMs.toFixed(3),
        });
        res.end(body);
        metrics.ttft.observe({ upstream: u.name }, (performance.now() - pr.t0) / 1000);
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
          { upstream: u.name, ms: performance.now() - pr.t0, err: err.message },
          "upstream dropped a stream after its first byte",
        );
        metrics.responses.inc({ status: "502", stream: "true" });
        res.destroy();
        settle({ kind: "done" }, "failure");
      },
    };
    try {
      u.pool.dispatch({ path: u.chatPath, method: "POST", headers, body: pr.body }, handler);
    } catch (err) {
      metrics.requests.inc({ upstream: u.name, status: "error" });
      log.warn({ upstream: u.name, err: (err as Error).message }, "upstream dispatch failed");
      settle({ kind: "retry", reason: "connect" }, "failure");
    }
  });
}
