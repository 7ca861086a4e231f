import type { IncomingMessage, ServerResponse } from "node:http";
import type { GatewayContext } from "../context.ts";
import { admissionAnswer, budgetAnswer } from "../domain/answers.ts";
import { type BudgetRefusal, type Grant, requestGrant } from "../domain/ledger.ts";
import { routeInput } from "../domain/policy.ts";
import { type ChatBodyView, upstreamBody, viewChatBody } from "../domain/prompt.ts";
import { RUN_ID_HEADER, readBody, sendAnswer, sendError, TASK_ID_HEADER } from "../http-util.ts";
import { proxyChat } from "../proxy.ts";
import { authenticate } from "./auth.ts";

/**
 * `POST /v1/chat/completions`: authenticates the token (a service token may name the run in `x-longshot-run-id`),
 * reads and checks the body (413, 400, 404 for a model no upstream serves), loads the run's stored usage, holds the
 * request's estimated tokens against its budgets (429 when refused), then serves it ({@link serveAdmitted}).
 * `t0` is `performance.now()` at arrival. Answers every request; rejects only on an internal error.
 */
export async function handleChat(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  t0: number,
): Promise<void> {
  const token = await authenticate(ctx, req, res);
  if (token === undefined) return;
  const runHeader = req.headers[RUN_ID_HEADER];
  const grant = requestGrant(token, runHeader);
  if (grant === undefined) {
    const named = JSON.stringify(String(runHeader).slice(0, 80));
    sendError(res, 400, "invalid_request", `${RUN_ID_HEADER}: not a run id: ${named}`);
    return;
  }
  const { maxBodyBytes } = ctx.settings;
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
  const { upstreams } = ctx;
  if (view.model !== undefined && upstreams.size > 0 && !upstreams.servedAnywhere(view.model)) {
    ctx.metrics.responses.inc({ status: "404", stream: String(view.stream) });
    sendError(
      res,
      404,
      "model_not_found",
      `model ${JSON.stringify(view.model)} is not served by this gateway (models: ${[...upstreams.catalog().ids].join(", ")})`,
    );
    return;
  }
  const loading = ctx.accounts.ensureRunLoaded(grant.runId);
  if (loading) await loading;
  // Estimated size of this request (≈ 4 bytes per prompt token, plus the completion cap it asked for).
  const estimate = Math.ceil(raw.length / 4) + (view.maxTokens ?? 0);
  const admitted = ctx.accounts.admit(grant, estimate);
  if (!("tokens" in admitted)) {
    refuseBudget(ctx, res, grant, admitted, view.stream);
    return;
  }
  try {
    await serveAdmitted(ctx, req, res, t0, grant, view, parsed, raw);
  } finally {
    ctx.accounts.release(admitted);
  }
}

/** Answers a request its budget refused (429, see `budgetAnswer`), counted and logged. */
function refuseBudget(
  ctx: GatewayContext,
  res: ServerResponse,
  grant: Grant,
  refusal: BudgetRefusal,
  stream: boolean,
): void {
  ctx.metrics.budgetRejections.inc({ scope: refusal.scope });
  ctx.metrics.responses.inc({ status: "429", stream: String(stream) });
  ctx.log.info({ runId: grant.runId, taskId: grant.taskId, ...refusal }, "request refused: budget");
  sendAnswer(res, budgetAnswer(grant, refusal));
}

/**
 * Serves a request within its budget: asks the upstream for usage when a stream did not (so tokens can be
 * counted), waits for an admission slot (429 when the queue is full or the wait too long), then proxies it under
 * the request deadline (504 `gateway_timeout` when it passed before an answer started).
 */
async function serveAdmitted(
  ctx: GatewayContext,
  req: IncomingMessage,
  res: ServerResponse,
  t0: number,
  grant: Grant,
  view: ChatBodyView,
  parsed: unknown,
  raw: Buffer,
): Promise<void> {
  const { metrics, settings } = ctx;
  // A stream is asked for its usage (to count tokens); the SSE tap removes that event again when the client did not.
  const { body, strip } = upstreamBody(parsed, raw, view);
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.on("close", onClose);
  const admission = await ctx.admission.acquire(abort.signal);
  if (!admission.ok) {
    if (admission.reason === "aborted") return;
    metrics.rejected.inc({ reason: admission.reason });
    metrics.responses.inc({ status: "429", stream: String(view.stream) });
    sendAnswer(res, admissionAnswer(admission.reason));
    return;
  }
  const deadline = Date.now() + settings.requestTimeoutMs;
  const deadlineTimer = setTimeout(() => abort.abort(), settings.requestTimeoutMs);
  deadlineTimer.unref();
  try {
    await proxyChat(
      ctx,
      { res, t0, overheadMs: 0, grant, view, body, strip, signal: abort.signal, deadline },
      routeInput(grant, req.headers[TASK_ID_HEADER], view),
    );
    if (abort.signal.aborted && !res.headersSent && !res.destroyed) {
      metrics.responses.inc({ status: "504", stream: String(view.stream) });
      sendError(res, 504, "gateway_timeout", `request exceeded ${settings.requestTimeoutMs} ms`);
    }
  } finally {
    clearTimeout(deadlineTimer);
    admission.release();
  }
}
