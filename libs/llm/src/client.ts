import { type LongshotEnv, llmEndpoints } from "@longshot/config";
import { GatewayHeaders } from "@longshot/contracts";
import OpenAI from "openai";
import type {
  ChatCompletion,
  ChatCompletionMessage,
  ChatCompletionMessageParam,
  ChatCompletionTool,
} from "openai/resources/chat/completions";
import type { z } from "zod";
import { extractJson } from "./json.ts";
import { capText, TOOL_DEFAULTS, type ToolOptions } from "./tools.ts";
import { SmoothWeightedRoundRobin, type Weighted } from "./wrr.ts";

/** One turn of a chat conversation, as sent to the model. */
export type ChatMessage = { role: "system" | "user" | "assistant"; content: string };

/** One model endpoint. `baseUrl` is OpenAI-style and ends in `/v1`. */
export interface ChatEndpoint {
  name: string;
  baseUrl: string;
  apiKey?: string | undefined;
  /** Relative share of calls (> 0; a non-positive weight counts as 1). */
  weight: number;
}

/** Options of {@link ChatClient}. */
export interface ChatClientOptions {
  endpoints: ChatEndpoint[];
  model: string;
  /** Per-request timeout in ms. */
  timeoutMs: number;
  /** `max_tokens` of each completion (tokens). */
  maxTokens: number;
  /** Extra headers on every request (e.g. a task id for session affinity at the gateway). */
  headers?: Record<string, string>;
  /**
   * Reasoning of reasoning models (GLM-5, Qwen3 …): `true`/`false` is sent as
   * `chat_template_kwargs: {enable_thinking}` (the SGLang and vLLM request field that switches the chat
   * template's thinking on or off); undefined sends nothing (the model's default).
   */
  reasoning?: boolean | undefined;
  /** Called after every call (metrics): wall time in ms including the SDK's retries, success, reported tokens. */
  observe?: (call: CallObservation) => void;
}

/** One finished call, for {@link ChatClientOptions.observe}. Tokens are absent when the call failed. */
export interface CallObservation {
  durationMs: number;
  ok: boolean;
  promptTokens?: number;
  completionTokens?: number;
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
 * A chat-completions client over the `openai` SDK. Endpoints are picked per call by smooth weighted round robin
 * (nginx style, {@link SmoothWeightedRoundRobin}); SDK retries (2) cover 408/409/429/5xx and connection errors.
 */
export class ChatClient {
  private readonly clients: OpenAI[];
  /** The endpoints as weighted entries, named by their index (endpoint names need not be unique). */
  private readonly weighted: Weighted[];
  private readonly wrr = new SmoothWeightedRoundRobin();
  private readonly opts: ChatClientOptions;

  constructor(opts: ChatClientOptions) {
    if (opts.endpoints.length === 0)
      throw new Error("no model endpoint configured: set LLM_BASE_URL or LLM_ENDPOINTS");
    this.opts = opts;
    this.weighted = opts.endpoints.map((ep, i) => ({ name: String(i), weight: ep.weight }));
    this.clients = opts.endpoints.map(
      (ep) =>
        new OpenAI({
          baseURL: ep.baseUrl,
          apiKey: ep.apiKey || "no-key",
          timeout: opts.timeoutMs,
          maxRetries: 2,
          ...(opts.headers ? { defaultHeaders: opts.headers } : {}),
        }),
    );
  }

  private pick(): OpenAI {
    return this.clients[Number(this.wrr.pick(this.weighted))]!;
  }

  /** One completion. @throws the SDK's APIError / APIConnectionError after its retries. */
  async complete(messages: ChatMessage[], ctx?: CallContext): Promise<{ content: string; usage: Usage }> {
    const res = await this.call(messages, ctx);
    return { content: res.message.content ?? "", usage: res.usage };
  }

  /**
   * One chat-completions request: `messages` as given (tool turns included), `tools` offered with `toolChoice`
   * when given. Returns the first choice's message and the reported usage (0 where not reported).
   * @throws the SDK's APIError / APIConnectionError after its retries.
   */
  private async call(
    messages: readonly ChatCompletionMessageParam[],
    ctx: CallContext | undefined,
    tools?: { definitions: readonly ChatCompletionTool[]; choice: "auto" | "none" },
  ): Promise<{ message: Partial<ChatCompletionMessage>; usage: Usage }> {
    const headers = callHeaders(ctx);
    const t0 = performance.now();
    let res: ChatCompletion;
    try {
      res = await this.pick().chat.completions.create(
        {
          model: this.opts.model,
          messages: messages as ChatCompletionMessageParam[],
          max_tokens: this.opts.maxTokens,
          ...(tools ? { tools: [...tools.definitions], tool_choice: tools.choice } : {}),
          // Not in the SDK's types: forwarded as is in the request body.
          ...(this.opts.reasoning !== undefined
            ? ({ chat_template_kwargs: { enable_thinking: this.opts.reasoning } } as object)
            : {}),
        },
        headers ? { headers } : undefined,
      );
    } catch (err) {
      this.opts.observe?.({ durationMs: performance.now() - t0, ok: false });
      throw err;
    }
    this.opts.observe?.({
      durationMs: performance.now() - t0,
      ok: true,
      promptTokens: res.usage?.prompt_tokens ?? 0,
      completionTokens: res.usage?.completion_tokens ?? 0,
    });
    return {
      message: res.choices[0]?.message ?? {},
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
   *
   * With `tools` (and `maxRounds` > 0) the model may call them first: each reply carrying `tool_calls` is
   * answered — every call run through `tools.run` (at most `maxCallsPerRound`, each result cut at
   * `maxResultChars`, all results within `maxTotalResultChars`), the assistant message and one `tool` message per
   * call appended — and the model asked again, until it replies without tool calls; after `maxRounds` such
   * replies it is asked once more with `tool_choice: "none"`. The tool exchange is transient: it is sent on the
   * later calls of this invocation (the repair included) but is not in `added`; `toolCalls` counts the calls
   * run. `usage` sums every call.
   * @throws ModelOutputError when the repaired reply is still invalid.
   * @throws the SDK's APIError / APIConnectionError after its retries.
   */
  async completeJson<S extends z.ZodType>(
    messages: ChatMessage[],
    schema: S,
    ctx?: CallContext,
    tools?: ToolOptions,
  ): Promise<{ value: z.infer<S>; added: ChatMessage[]; usage: Usage; toolCalls: number }> {
    const added: ChatMessage[] = [];
    const usage: Usage = { promptTokens: 0, completionTokens: 0, totalTokens: 0 };
    /** Everything sent: the messages, the turns added and the transient tool exchange, in order. */
    const wire: ChatCompletionMessageParam[] = [...messages];
    const offered = tools && tools.maxRounds > 0 ? tools : undefined;
    const definitions = (offered?.tools.definitions ?? []) as readonly ChatCompletionTool[];
    const maxCalls = offered?.maxCallsPerRound ?? TOOL_DEFAULTS.maxCallsPerRound;
    const maxChars = offered?.maxResultChars ?? TOOL_DEFAULTS.maxResultChars;
    let budget = offered?.maxTotalResultChars ?? TOOL_DEFAULTS.maxTotalResultChars;
    let rounds = 0;
    let toolCalls = 0;
    let problem = "";
    for (let attempt = 0; attempt < 2; attempt++) {
      let content = "";
      for (;;) {
        const choice = offered && rounds < offered.maxRounds ? "auto" : "none";
        const res = await this.call(wire, ctx, offered ? { definitions, choice } : undefined);
        usage.promptTokens += res.usage.promptTokens;
        usage.completionTokens += res.usage.completionTokens;
        usage.totalTokens += res.usage.totalTokens;
        const calls = res.message.tool_calls ?? [];
        // Tool calls are answered only while they were offered; a reply under "none" is taken as the answer.
        if (!offered || choice === "none" || calls.length === 0) {
          content = res.message.content ?? "";
          break;
        }
        rounds++;
        wire.push({ role: "assistant", content: res.message.content ?? null, tool_calls: calls });
        for (const [i, call] of calls.entries()) {
          let result: string;
          if (call.type !== "function") result = "error: only function tools exist here";
          else if (i >= maxCalls)
            result = `error: not run: at most ${maxCalls} tool calls are run per reply; call it again in the next reply`;
          else if (budget <= 0)
            result =
              "error: not run: the tool output budget of this request is used up; reply with your answer now";
          else {
            toolCalls++;
            result = await offered.tools
              .run(call.function.name, call.function.arguments)
              .catch((err: unknown) => `error: ${(err as Error).message ?? String(err)}`);
            result = capText(result, Math.min(maxChars, Math.max(budget, 200)), "ask for less");
            budget -= result.length;
          }
          wire.push({ role: "tool", tool_call_id: call.id, content: result });
        }
      }
      added.push({ role: "assistant", content });
      wire.push({ role: "assistant", content });
      const json = extractJson(content);
      if (json.ok) {
        const parsed = schema.safeParse(json.value);
        if (parsed.success) return { value: parsed.data, added, usage, toolCalls };
        problem = parsed.error.issues
          .slice(0, 5)
          .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
          .join("; ");
      } else problem = `not valid JSON (${json.error})`;
      if (attempt === 0) {
        const repair: ChatMessage = {
          role: "user",
          content: `Your last reply could not be used: ${problem}. Reply again with only the corrected JSON, no prose.`,
        };
        added.push(repair);
        wire.push(repair);
      }
    }
    throw new ModelOutputError(`model output invalid after one repair: ${problem}`);
  }
}

/**
 * The chat client of a service, from its configuration: every endpoint of `LLM_ENDPOINTS` (or
 * `LLM_BASE_URL`/`LLM_API_KEY`), `LLM_MODEL`, `LLM_TIMEOUT_MS`, `LLM_MAX_TOKENS`; `extra.observe` sees every call;
 * `extra.reasoning` (see `reasoningFor` of @longshot/config) switches the model's thinking.
 * @throws Error when no endpoint is configured.
 */
export function chatClientFromConfig(
  cfg: LongshotEnv,
  extra: Pick<ChatClientOptions, "observe" | "reasoning"> = {},
): ChatClient {
  return new ChatClient({
    ...extra,
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
