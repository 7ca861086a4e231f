import { type LongshotEnv, llmEndpoints } from "@longshot/config";
import { GatewayHeaders } from "@longshot/contracts";
import OpenAI from "openai";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import type { z } from "zod";
import { extractJson } from "./json.ts";

export type ChatMessage = { role: "system" | "user" | "assistant"; content: string };

/** One model endpoint. `baseUrl` is OpenAI-style and ends in `/v1`. */
export interface ChatEndpoint {
  name: string;
  baseUrl: string;
  apiKey?: string | undefined;
  weight: number;
}

export interface ChatClientOptions {
  endpoints: ChatEndpoint[];
  model: string;
  /** Per-request timeout in ms. */
  timeoutMs: number;
  /** `max_tokens` of each completion (tokens). */
  maxTokens: number;
  /** Extra headers on every request (e.g. a task id for session affinity at the gateway). */
  headers?: Record<string, string>;
}

/**
 * Who a call is for, sent to the LLM gateway as headers (`GatewayHeaders`): the run it is accounted to (honoured
 * for service tokens) and a task key that keeps a conversation on the replica holding its prefix.
 */
export interface CallContext {
  runId?: string;
  taskId?: string;
}

function callHeaders(ctx: CallContext | undefined): Record<string, string> | undefined {
  if (ctx === undefined) return undefined;
  const h: Record<string, string> = {};
  if (ctx.runId) h[GatewayHeaders.runId] = ctx.runId;
  if (ctx.taskId) h[GatewayHeaders.taskId] = ctx.taskId;
  return h;
}

/** Token usage of one call, as reported by the endpoint. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

/**
 * The HTTP status of a model error that retrying cannot fix — 401 (bad key), 403 (no access), 404 (unknown model,
 * e.g. the LLM gateway's `model_not_found`) — else undefined. The openai SDK's `APIError` carries `status`.
 */
export function refusalStatus(err: unknown): 401 | 403 | 404 | undefined {
  const status = (err as { status?: unknown } | null)?.status;
  return status === 401 || status === 403 || status === 404 ? status : undefined;
}

/** Thrown when the model's reply could not be turned into the expected JSON, even after one repair retry. */
export class ModelOutputError extends Error {
  override readonly name = "ModelOutputError";
}

/**
 * A chat-completions client over the `openai` SDK. Endpoints are picked by smooth weighted round robin
 * (nginx style) per call; SDK retries (2) cover 408/409/429/5xx and connection errors.
 */
export class ChatClient {
  private readonly clients: { ep: ChatEndpoint; client: OpenAI; current: number }[];
  private readonly opts: ChatClientOptions;

  constructor(opts: ChatClientOptions) {
    if (opts.endpoints.length === 0)
      throw new Error("no model endpoint configured: set LLM_BASE_URL or LLM_ENDPOINTS");
    this.opts = opts;
    this.clients = opts.endpoints.map((ep) => ({
      ep,
      current: 0,
      client: new OpenAI({
        baseURL: ep.baseUrl,
        apiKey: ep.apiKey || "no-key",
        timeout: opts.timeoutMs,
        maxRetries: 2,
        ...(opts.headers ? { defaultHeaders: opts.headers } : {}),
      }),
    }));
  }

  private pick(): OpenAI {
    const total = this.clients.reduce((s, c) => s + c.ep.weight, 0);
    let best = this.clients[0]!;
    for (const c of this.clients) {
      c.current += c.ep.weight;
      if (c.current > best.current) best = c;
    }
    best.current -= total;
    return best.client;
  }

  /** One completion. @throws the SDK's APIError / APIConnectionError after its retries. */
  async complete(messages: ChatMessage[], ctx?: CallContext): Promise<{ content: string; usage: Usage }> {
    const headers = callHeaders(ctx);
    const res = await this.pick().chat.completions.create(
      {
        model: this.opts.model,
        messages: messages as ChatCompletionMessageParam[],
        max_tokens: this.opts.maxTokens,
      },
      headers ? { headers } : undefined,
    );
    const content = res.choices[0]?.message?.content ?? "";
    return {
      content,
      usage: {
        promptTokens: res.usage?.prompt_tokens ?? 0,
        completionTokens: res.usage?.completion_tokens ?? 0,
        totalTokens: res.usage?.total_tokens ?? 0,
      },
    };
  }

  /**
   * Asks for JSON matching `schema`. On unparsable or invalid output, sends one repair message quoting the
   * problem and tries again. Returns the parsed value plus the conversation turns added (assistant replies
   * and the repair prompt) so callers can keep a continuous conversation.
   * @throws ModelOutputError when the repaired reply is still invalid.
   */
  async completeJson<S extends z.ZodType>(
    messages: ChatMessage[],
    schema: S,
    ctx?: CallContext,
  ): Promise<{ value: z.infer<S>; added: ChatMessage[]; usage: Usage }> {
    const added: ChatMessage[] = [];
    const usage: Usage = { promptTokens: 0, completionTokens: 0, totalTokens: 0 };
    let problem = "";
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await this.complete([...messages, ...added], ctx);
      usage.promptTokens += res.usage.promptTokens;
      usage.completionTokens += res.usage.completionTokens;
      usage.totalTokens += res.usage.totalTokens;
      added.push({ role: "assistant", content: res.content });
      const json = extractJson(res.content);
      if (json.ok) {
        const parsed = schema.safeParse(json.value);
        if (parsed.success) return { value: parsed.data, added, usage };
        problem = parsed.error.issues
          .slice(0, 5)
          .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
          .join("; ");
      } else problem = `not valid JSON (${json.error})`;
      if (attempt === 0) {
        added.push({
          role: "user",
          content: `Your last reply could not be used: ${problem}. Reply again with only the corrected JSON, no prose.`,
        });
      }
    }
    throw new ModelOutputError(`model output invalid after one repair: ${problem}`);
  }
}

/**
 * The chat client of a service, from its configuration: every endpoint of `LLM_ENDPOINTS` (or
 * `LLM_BASE_URL`/`LLM_API_KEY`), `LLM_MODEL`, `LLM_TIMEOUT_MS`, `LLM_MAX_TOKENS`.
 * @throws Error when no endpoint is configured.
 */
export function chatClientFromConfig(cfg: LongshotEnv): ChatClient {
  return new ChatClient({
    endpoints: llmEndpoints(cfg).map((e) => ({
      name: e.name,
      baseUrl: e.endpoint,
      apiKey: e.apiKey,
      weight: e.weight,
    })),
    model: cfg.LLM_MODEL,
    timeoutMs: cfg.LLM_TIMEOUT_MS,
    maxTokens: cfg.LLM_MAX_TOKENS,
  });
}
