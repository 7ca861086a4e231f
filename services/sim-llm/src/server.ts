import { randomBytes } from "node:crypto";
import { appendFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { completionObject, errorBody, type ResponseMeta, streamEvents } from "./openai-format.ts";
import { type FaultOptions, Replica, type ReplicaOptions } from "./replica.ts";
import {
  type ChatRequest,
  type CompletionPlan,
  type ErrorPlan,
  errorPlan,
  parseChatRequest,
  respond,
} from "./respond.ts";
import { loadScript, parseScript, type Script, type ScriptInput } from "./script.ts";
import { sleep, waitForFile, write } from "./stream-io.ts";

/** Largest accepted request body (bytes). */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** Options of {@link createSimLlmHandler}. */
export interface SimLlmHandlerOptions {
  script: Script;
  /** When set, `/v1/*` requests must send `Authorization: Bearer <apiKey>` (else 401). */
  apiKey?: string;
  /** Receives one line per request (no trailing newline). */
  log?: (line: string) => void;
  /** Serve completions as this SGLang replica (prefix cache, running limit, faults); adds `/metrics` and `/sim/faults`. */
  replica?: Replica;
  /**
   * Sees every valid chat-completions request before it is answered (tests: what did the model receive?), with
   * the conversation and turn it was matched to (absent when none matched).
   */
  onRequest?: (record: RequestRecord) => void;
}

/** One chat-completions request as sim-llm received it (see `onRequest`, `--record`). */
export interface RequestRecord {
  conversation?: string;
  turnIndex?: number;
  /** The request body as parsed (messages, tools, tool_choice, … as sent). */
  request: ChatRequest;
}

/** Options of {@link startSimLlm}: exactly one of `script` / `scriptPath`. */
export interface StartSimLlmOptions {
  /** Script object (validated with the zod schema; defaults applied). */
  script?: Script | ScriptInput;
  /** Path of a script JSON file (see {@link loadScript}). */
  scriptPath?: string;
  /** TCP port; 0 (default) picks a free port. */
  port?: number;
  /** Bind address; default "127.0.0.1". */
  host?: string;
  /** Require `Authorization: Bearer <apiKey>` on `/v1/*`. */
  apiKey?: string;
  /** Log one line per request to stderr. */
  verbose?: boolean;
  /** Custom per-request log sink (implies logging; overrides `verbose`'s stderr sink). */
  log?: (line: string) => void;
  /**
   * Replica mode (SGLang stand-in): `true` or options. With it, `script`/`scriptPath` become optional: without
   * one, every request gets a synthetic reply of `syntheticReplyTokens` tokens.
   */
  replica?: ReplicaOptions | true;
  /** Replica mode without a script: completion length of the synthetic reply (tokens). Default 32. */
  syntheticReplyTokens?: number;
  /** Replica mode without a script: the model id served. Default "sim-1". */
  model?: string;
  /** See {@link SimLlmHandlerOptions.onRequest}. */
  onRequest?: (record: RequestRecord) => void;
  /**
   * Append every chat-completions request to this file as one JSON line ({@link RequestRecord}), written before
   * the answer is sent (the CLI's `--record`).
   */
  recordPath?: string;
}

/** A running sim-llm server. */
export interface SimLlm {
  /** OpenAI base URL, e.g. `http://127.0.0.1:43210/v1`. */
  url: string;
  port: number;
  host: string;
  script: Script;
  /** The replica simulator, in replica mode (change faults with `replica.setFaults`). */
  replica?: Replica;
  /** Stops listening and drops open connections (in-flight streams are cut). */
  close(): Promise<void>;
}

/** The server was misconfigured (e.g. neither or both of `script` and `scriptPath`). */
export class SimLlmConfigError extends Error {
  override name = "SimLlmConfigError";
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, plan: ErrorPlan): void {
  sendJson(res, plan.status, errorBody(plan));
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function sendStream(
  res: ServerResponse,
  plan: CompletionPlan,
  meta: ResponseMeta,
  script: Script,
  signal: AbortSignal,
): Promise<void> {
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
  });
  res.flushHeaders();
  const tps = script.latency?.tokensPerSecond;
  if (!(await sleep(script.latency?.ttftMs ?? 0, signal))) return;
  let first = true;
  for (const ev of streamEvents(plan, meta)) {
    if (!first && tps !== undefined && ev.tokens > 0) {
      if (!(await sleep((ev.tokens / tps) * 1000, signal))) return;
    }
    first = false;
    if (signal.aborted) return;
    await write(res, `data: ${JSON.stringify(ev.chunk)}\n\n`);
  }
  res.end("data: [DONE]\n\n");
}

function authorized(req: IncomingMessage, apiKey: string | undefined): boolean {
  if (apiKey === undefined) return true;
  const header = req.headers.authorization ?? "";
  return header === `Bearer ${apiKey}`;
}

/**
 * The request handler of sim-llm (routes `/v1/chat/completions`, `/v1/models`, `/v1/models/{id}`, `/health`).
 * Exposed separately from {@link startSimLlm} so it can be mounted on another server.
 */
export function createSimLlmHandler(
  options: SimLlmHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { script, apiKey, log, replica, onRequest } = options;
  return async (req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const method = req.method ?? "GET";
    const logLine = (text: string) => log?.(`sim-llm ${method} ${path} ${text}`);
    if (path === "/health" || path === "/v1/health") {
      if (replica && !replica.healthy) sendJson(res, 503, { status: "unhealthy" });
      else sendJson(res, 200, { status: "ok" });
      return;
    }
    if (replica && path === "/metrics") {
      const text = replica.metricsText(script.model);
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
      res.end(text);
      return;
    }
    if (replica && path === "/sim/faults") {
      if (method === "POST") {
        const raw = await readBody(req);
        let faults: FaultOptions;
        try {
          faults = JSON.parse(raw || "{}") as FaultOptions;
        } catch (err) {
          sendError(res, errorPlan(400, `invalid JSON: ${(err as Error).message}`, "invalid_json"));
          return;
        }
        sendJson(res, 200, replica.setFaults(faults));
        logLine(`faults=${JSON.stringify(replica.getFaults())}`);
        return;
      }
      sendJson(res, 200, replica.getFaults());
      return;
    }
    if (!path.startsWith("/v1/")) {
      sendError(res, errorPlan(404, `unknown route ${method} ${path}`, "not_found"));
      logLine("status=404");
      return;
    }
    if (!authorized(req, apiKey)) {
      sendError(res, errorPlan(401, "Incorrect API key provided.", "invalid_api_key"));
      logLine("status=401");
      return;
    }
    if (path === "/v1/models" || path.startsWith("/v1/models/")) {
      if (method !== "GET") {
        sendError(res, errorPlan(405, `method ${method} not allowed on ${path}`, "method_not_allowed"));
        return;
      }
      const model = { id: script.model, object: "model", created: 0, owned_by: "sim-llm" };
      if (path === "/v1/models") sendJson(res, 200, { object: "list", data: [model] });
      else if (decodeURIComponent(path.slice("/v1/models/".length)) === script.model)
        sendJson(res, 200, model);
      else sendError(res, errorPlan(404, `The model '${path.slice(11)}' does not exist`, "model_not_found"));
      return;
    }
    if (path !== "/v1/chat/completions") {
      sendError(res, errorPlan(404, `unknown route ${method} ${path}`, "not_found"));
      logLine("status=404");
      return;
    }
    if (method !== "POST") {
      sendError(res, errorPlan(405, `method ${method} not allowed on ${path}`, "method_not_allowed"));
      return;
    }
    const text = await readBody(req);
    if (text === undefined) {
      sendError(res, errorPlan(413, `request body exceeds ${MAX_BODY_BYTES} bytes`, "request_too_large"));
      logLine("status=413");
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      sendError(
        res,
        errorPlan(400, `request body is not valid JSON: ${(err as Error).message}`, "invalid_json"),
      );
      logLine("status=400 invalid_json");
      return;
    }
    const parsed = parseChatRequest(body);
    if (!parsed.ok) {
      sendError(res, parsed.error);
      logLine(`status=400 ${parsed.error.error.code}`);
      return;
    }
    const plan = respond(script, parsed.request);
    const where =
      plan.conversation === undefined
        ? "conversation=(none)"
        : `conversation=${JSON.stringify(plan.conversation)} turn=${plan.turnIndex}`;
    const outcome =
      plan.kind === "error"
        ? `status=${plan.status} ${plan.error.code}`
        : `status=200 finish=${plan.finishReason}${plan.toolCalls.length > 0 ? ` tools=${plan.toolCalls.map((t) => t.name).join(",")}` : ""}`;
    logLine(`${where} stream=${plan.stream} ${outcome}`);
    onRequest?.({
      ...(plan.conversation !== undefined ? { conversation: plan.conversation } : {}),
      ...(plan.turnIndex !== undefined ? { turnIndex: plan.turnIndex } : {}),
      request: parsed.request,
    });

    const abort = new AbortController();
    res.on("close", () => abort.abort());
    if (!(await sleep(plan.delayMs, abort.signal))) return;
    if (
      plan.kind === "completion" &&
      plan.waitForFile &&
      !(await waitForFile(plan.waitForFile, abort.signal))
    )
      return;
    if (plan.kind === "error") {
      sendError(res, plan);
      return;
    }
    const meta: ResponseMeta = {
      id: `chatcmpl-${randomBytes(12).toString("hex")}`,
      created: Math.floor(Date.now() / 1000),
    };
    if (replica) await replica.serve(res, plan, parsed.request.messages, meta, abort.signal);
    else if (plan.stream) await sendStream(res, plan, meta, script, abort.signal);
    else sendJson(res, 200, completionObject(plan, meta));
  };
}

/**
 * The script of replica mode without a script: one fallback conversation whose reply is `tokens` tokens
 * (4 chars each) of filler text.
 */
export function syntheticScript(model: string, tokens: number): Script {
  const filler = "The quick brown fox jumps over the lazy dog. ";
  const chars = Math.max(1, tokens) * 4;
  const content = filler.repeat(Math.ceil(chars / filler.length)).slice(0, chars);
  return parseScript({ model, conversations: [{ name: "synthetic", turns: [{ content }] }] }, "(synthetic)");
}

/**
 * Starts sim-llm on `host:port` (default 127.0.0.1, a free port).
 * @returns the base URL (`http://HOST:PORT/v1`; wildcard hosts are reported as 127.0.0.1), port and `close()`.
 * @throws SimLlmConfigError unless exactly one of `script` / `scriptPath` is given.
 * @throws ScriptLoadError / ScriptValidationError for a bad script; the listen error (e.g. EADDRINUSE).
 */
export async function startSimLlm(options: StartSimLlmOptions): Promise<SimLlm> {
  const none = options.script === undefined && options.scriptPath === undefined;
  const both = options.script !== undefined && options.scriptPath !== undefined;
  if (both || (none && options.replica === undefined)) {
    throw new SimLlmConfigError("startSimLlm needs exactly one of `script` or `scriptPath`");
  }
  const script = none
    ? syntheticScript(options.model ?? "sim-1", options.syntheticReplyTokens ?? 32)
    : options.scriptPath !== undefined
      ? await loadScript(options.scriptPath)
      : parseScript(options.script);
  const replica =
    options.replica === undefined
      ? undefined
      : new Replica(options.replica === true ? {} : options.replica, script.latency);
  const host = options.host ?? "127.0.0.1";
  const log =
    options.log ?? (options.verbose ? (line: string) => process.stderr.write(`${line}\n`) : undefined);
  const { recordPath, onRequest } = options;
  const record =
    recordPath === undefined
      ? onRequest
      : (r: RequestRecord) => {
          appendFileSync(recordPath, `${JSON.stringify(r)}\n`);
          onRequest?.(r);
        };
  const handler = createSimLlmHandler({
    script,
    ...(options.apiKey ? { apiKey: options.apiKey } : {}),
    log,
    ...(replica ? { replica } : {}),
    ...(record ? { onRequest: record } : {}),
  });
  const server: Server = createServer((req, res) => {
    handler(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        sendError(res, errorPlan(500, `sim-llm internal error: ${(err as Error).message}`, "internal_error"));
      } else res.destroy(err as Error);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}/v1`,
    port,
    host,
    script,
    ...(replica ? { replica } : {}),
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
