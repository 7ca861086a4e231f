import {
  GatewayHeaders,
  type ModelRequestLine,
  RELAYED_REQUEST_HEADERS,
  type RelayLine,
} from "@longshot/contracts";

/** Model API routes a sandbox may call through the relay (method and path below the `/v1` base). */
const ALLOWED_ROUTES = new Set(["POST /v1/chat/completions", "GET /v1/models"]);
/** Most model calls of one sandbox in flight at once; more get 429. */
const MAX_IN_FLIGHT = 8;

/** Where the relay sends a sandbox's model calls, and as whom. */
export interface ModelRelayTarget {
  /** OpenAI-compatible base URL ending in `/v1` (the LLM gateway, or the endpoint itself). */
  baseUrl: string;
  /** The credential added to every call: the task's gateway token (or the endpoint key). Never sent inside. */
  apiKey?: string;
  /** Routing headers the relay sets itself (`x-longshot-run-id`, `x-longshot-task-id`): the task's own. */
  runId: string;
  taskId: string;
  /** The worker's reasoning switch (`LLM_REASONING_WORKER`): set as `chat_template_kwargs.enable_thinking`. */
  reasoning?: boolean | undefined;
}

/**
 * The body of a relayed chat completion as it leaves: earlier turns' reasoning (`reasoning_content`,
 * `reasoning` on assistant messages, which some agents echo back and which only grows every prompt) removed,
 * and `chat_template_kwargs.enable_thinking` set when `reasoning` is given. A body that is not a JSON object
 * passes unchanged (the endpoint answers it). Pure.
 */
export function rewriteChatBody(body: string, reasoning: boolean | undefined): string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return body;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return body;
  const req = value as { messages?: unknown; chat_template_kwargs?: unknown };
  let changed = false;
  if (Array.isArray(req.messages)) {
    for (const m of req.messages as Array<Record<string, unknown>>) {
      if (m?.role !== "assistant") continue;
      for (const k of ["reasoning_content", "reasoning"]) {
        if (k in m) {
          delete m[k];
          changed = true;
        }
      }
    }
  }
  if (reasoning !== undefined) {
    const kw =
      typeof req.chat_template_kwargs === "object" && req.chat_template_kwargs !== null
        ? req.chat_template_kwargs
        : {};
    req.chat_template_kwargs = { ...kw, enable_thinking: reasoning };
    changed = true;
  }
  return changed ? JSON.stringify(req) : body;
}

/** Counters of one relay, for logs and tests. */
export interface ModelRelayStats {
  requests: number;
  refused: number;
  failed: number;
}

/**
 * The provider's end of the model relay (see the worker's adapters/model-relay.ts and
 * libs/contracts/src/worker-protocol.ts). For every `model.request` a sandbox writes on stdout it calls the
 * model endpoint — only `POST /v1/chat/completions` and `GET /v1/models`, only the headers in
 * `RELAYED_REQUEST_HEADERS`, with the task's own routing headers and credential added here, outside — and
 * writes the answer back to the sandbox's stdin as `RelayLine`s (head, body chunks as they arrive, end).
 * Chat bodies are rewritten on the way ({@link rewriteChatBody}: earlier reasoning dropped, the reasoning
 * switch set). Any other route gets 403 from the relay itself; more than 8 calls in flight get 429. `model.cancel` aborts
 * the upstream call. The sandbox never sees a key and cannot reach any other address or route.
 */
export function createModelRelay(target: ModelRelayTarget, write: (line: RelayLine) => void) {
  const inFlight = new Map<string, AbortController>();
  const stats: ModelRelayStats = { requests: 0, refused: 0, failed: 0 };
  const base = target.baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");

  const refuse = (id: string, status: number, message: string) => {
    stats.refused++;
    write({ kind: "model.response", id, status, headers: { "content-type": "application/json" } });
    write({ kind: "model.chunk", id, data: JSON.stringify({ error: { message, type: "relay_refused" } }) });
    write({ kind: "model.end", id });
  };

  const request = async (line: ModelRequestLine): Promise<void> => {
    stats.requests++;
    const path = line.path.split("?")[0] ?? "";
    if (!ALLOWED_ROUTES.has(`${line.method} ${path}`)) {
      refuse(line.id, 403, `the sandbox may not call ${line.method} ${path}`);
      return;
    }
    if (inFlight.has(line.id)) return;
    if (inFlight.size >= MAX_IN_FLIGHT) {
      refuse(line.id, 429, `more than ${MAX_IN_FLIGHT} model calls in flight`);
      return;
    }
    const abort = new AbortController();
    inFlight.set(line.id, abort);
    const headers: Record<string, string> = {};
    for (const name of RELAYED_REQUEST_HEADERS) {
      const v = line.headers[name];
      if (v !== undefined) headers[name] = v;
    }
    headers[GatewayHeaders.runId] = target.runId;
    headers[GatewayHeaders.taskId] = target.taskId;
    if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
    try {
      const res = await fetch(`${base}${path}`, {
        method: line.method,
        headers,
        ...(line.method === "POST" ? { body: rewriteChatBody(line.body, target.reasoning) } : {}),
        signal: abort.signal,
      });
      const type = res.headers.get("content-type");
      write({
        kind: "model.response",
        id: line.id,
        status: res.status,
        headers: type ? { "content-type": type } : {},
      });
      if (res.body) {
        const decoder = new TextDecoder();
        for await (const chunk of res.body) {
          const data = decoder.decode(chunk as Uint8Array, { stream: true });
          if (data.length > 0) write({ kind: "model.chunk", id: line.id, data });
        }
        const rest = decoder.decode();
        if (rest.length > 0) write({ kind: "model.chunk", id: line.id, data: rest });
      }
      write({ kind: "model.end", id: line.id });
    } catch (err) {
      stats.failed++;
      if (!abort.signal.aborted) {
        write({ kind: "model.end", id: line.id, error: err instanceof Error ? err.message : String(err) });
      }
    } finally {
      inFlight.delete(line.id);
    }
  };

  return {
    stats,
    /** Handles one `model.request` line (never throws; failures become `model.end` with `error`). */
    request(line: ModelRequestLine): void {
      void request(line);
    },
    /** Aborts the upstream call of `id` (the agent gave up on it). */
    cancel(id: string): void {
      inFlight.get(id)?.abort();
    },
    /** Aborts every call in flight (the sandbox is ending). */
    close(): void {
      for (const a of inFlight.values()) a.abort();
      inFlight.clear();
    },
  };
}
