import { randomBytes } from "node:crypto";
import { z } from "zod";
import { type Conversation, compileMatcher, type Script, type Turn } from "./script.ts";

/**
 * The subset of an OpenAI chat-completions request that sim-llm reads. Unknown fields (tools, store,
 * max_completion_tokens, temperature, ...) are accepted and ignored.
 */
export const ChatRequestSchema = z.looseObject({
  model: z.string().optional(),
  messages: z
    .array(
      z.looseObject({
        role: z.string(),
        content: z
          .union([
            z.string(),
            z.array(z.looseObject({ type: z.string().optional(), text: z.string().optional() })),
          ])
          .nullish(),
        tool_calls: z
          .array(
            z.looseObject({
              function: z
                .looseObject({ name: z.string().optional(), arguments: z.string().optional() })
                .optional(),
            }),
          )
          .nullish(),
      }),
    )
    .min(1),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
});

/** A chat-completions request as parsed by {@link ChatRequestSchema}. */
export type ChatRequest = z.output<typeof ChatRequestSchema>;
/** One message of a {@link ChatRequest}. */
export type ChatMessage = ChatRequest["messages"][number];

/** OpenAI `usage` object (token counts are estimates: ceil(chars / 4)). */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

/** A tool call ready for the wire: arguments already serialized. */
export interface PlannedToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** Plan for a successful completion, rendered by the HTTP layer as JSON or SSE. */
export interface CompletionPlan {
  kind: "completion";
  conversation: string;
  turnIndex: number;
  model: string;
  /** Assistant text; `null` when the turn only has tool calls. */
  content: string | null;
  toolCalls: PlannedToolCall[];
  finishReason: "stop" | "tool_calls";
  usage: Usage;
  /** Wait before answering (ms). */
  delayMs: number;
  /** Then hold the answer until this path exists (the turn's `waitForFile`). */
  waitForFile?: string;
  stream: boolean;
  /** Emit a final usage chunk (`choices: []`) on a stream. */
  includeUsage: boolean;
}

/** Plan for an OpenAI-shaped HTTP error (`{error: {message, type, code}}`). */
export interface ErrorPlan {
  kind: "error";
  status: number;
  error: { message: string; type: string; code: string };
  /** Set when a conversation was selected (script exhaustion, injected fault). */
  conversation?: string;
  turnIndex?: number;
  /** Wait before answering (ms). */
  delayMs: number;
  stream: boolean;
}

/** What to answer to one chat-completions request. */
export type ResponsePlan = CompletionPlan | ErrorPlan;

/** Options of {@link respond}. */
export interface RespondOptions {
  /** Tool call id generator (called once per tool call without a scripted id). Default: random `call_…`. */
  newToolCallId?: () => string;
}

/** OpenAI error `type` for an HTTP status. */
export function errorTypeForStatus(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** Builds an {@link ErrorPlan}. */
export function errorPlan(
  status: number,
  message: string,
  code: string,
  extra: {
    type?: string;
    conversation?: string;
    turnIndex?: number;
    delayMs?: number;
    stream?: boolean;
  } = {},
): ErrorPlan {
  const plan: ErrorPlan = {
    kind: "error",
    status,
    error: { message, type: extra.type ?? errorTypeForStatus(status), code },
    delayMs: extra.delayMs ?? 0,
    stream: extra.stream ?? false,
  };
  if (extra.conversation !== undefined) plan.conversation = extra.conversation;
  if (extra.turnIndex !== undefined) plan.turnIndex = extra.turnIndex;
  return plan;
}

/**
 * Validates a parsed JSON request body.
 * @returns the request, or a 400 {@link ErrorPlan} naming the invalid fields.
 */
export function parseChatRequest(
  body: unknown,
): { ok: true; request: ChatRequest } | { ok: false; error: ErrorPlan } {
  const result = ChatRequestSchema.safeParse(body);
  if (result.success) return { ok: true, request: result.data };
  const details = result.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; ");
  return {
    ok: false,
    error: errorPlan(400, `invalid chat completion request: ${details}`, "invalid_request"),
  };
}

/** Text of a message's content: the string itself, or its text parts joined (images ignored). */
export function messageText(message: ChatMessage): string {
  const c = message.content;
  if (c === null || c === undefined) return "";
  if (typeof c === "string") return c;
  return c.map((p) => p.text ?? "").join("");
}

/** Estimated tokens of a text: ceil(chars / 4). */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

/** Estimated prompt tokens: ceil(chars / 4) over every message's text and its tool calls' names + arguments. */
export function estimatePromptTokens(messages: readonly ChatMessage[]): number {
  let chars = 0;
  for (const m of messages) {
    chars += messageText(m).length;
    for (const tc of m.tool_calls ?? []) {
      chars += (tc.function?.name ?? "").length + (tc.function?.arguments ?? "").length;
    }
  }
  return Math.ceil(chars / 4);
}

/** The text `match.system` is tested against: `system` and `developer` messages joined with "\n". */
export function systemText(messages: readonly ChatMessage[]): string {
  return messages
    .filter((m) => m.role === "system" || m.role === "developer")
    .map(messageText)
    .join("\n");
}

/** The text `match.user` is tested against: the first `user` message (empty string when none). */
export function firstUserText(messages: readonly ChatMessage[]): string {
  const m = messages.find((x) => x.role === "user");
  return m === undefined ? "" : messageText(m);
}

/** Whether a matcher (substring, or `/regex/flags`) matches a text. */
export function matcherMatches(matcher: string, text: string): boolean {
  const compiled = compileMatcher(matcher);
  return typeof compiled === "string" ? text.includes(compiled) : compiled.test(text);
}

/** The first conversation whose every given matcher matches the request, or undefined. */
export function selectConversation(
  script: Script,
  messages: readonly ChatMessage[],
): Conversation | undefined {
  const system = systemText(messages);
  const user = firstUserText(messages);
  return script.conversations.find((c) => {
    if (c.match === undefined) return true;
    if (c.match.system !== undefined && !matcherMatches(c.match.system, system)) return false;
    if (c.match.user !== undefined && !matcherMatches(c.match.user, user)) return false;
    return true;
  });
}

/** Turn index of a request: the number of `assistant` messages already in it. */
export function turnIndexOf(messages: readonly ChatMessage[]): number {
  return messages.filter((m) => m.role === "assistant").length;
}

/** A random OpenAI-looking tool call id (`call_` + 24 hex chars). */
export function randomToolCallId(): string {
  return `call_${randomBytes(12).toString("hex")}`;
}

function plannedToolCalls(turn: Turn, newId: () => string): PlannedToolCall[] {
  const used = new Set<string>();
  return (turn.toolCalls ?? []).map((tc) => {
    let id = tc.id ?? newId();
    while (used.has(id)) id = newId();
    used.add(id);
    const args = typeof tc.arguments === "string" ? tc.arguments : JSON.stringify(tc.arguments);
    return { id, name: tc.name, arguments: args };
  });
}

/**
 * Decides, without side effects, what sim-llm answers to one chat-completions request:
 * selects the first matching conversation, picks turn = number of assistant messages (repeating the last
 * turn, or a 400 `script_exhausted` error when the conversation has `after: "error"`), and returns either a
 * {@link CompletionPlan} (content / tool calls / usage) or an {@link ErrorPlan} (no match, exhausted script,
 * scripted fault). Never throws for a request that passed {@link parseChatRequest}.
 */
export function respond(script: Script, request: ChatRequest, options: RespondOptions = {}): ResponsePlan {
  const stream = request.stream === true;
  const messages = request.messages;
  const conversation = selectConversation(script, messages);
  if (conversation === undefined) {
    const user = firstUserText(messages).slice(0, 200);
    const names = script.conversations.map((c) => JSON.stringify(c.name)).join(", ");
    return errorPlan(
      400,
      `sim-llm: no scripted conversation matches this request. First user message (first 200 chars): ${JSON.stringify(user)}. Conversations: ${names}`,
      "no_matching_conversation",
      { stream },
    );
  }
  const turnIndex = turnIndexOf(messages);
  const ctx = { conversation: conversation.name, turnIndex, stream };
  let turn = conversation.turns[turnIndex];
  if (turn === undefined) {
    if (conversation.after === "error") {
      return errorPlan(
        400,
        `sim-llm: script ran out: conversation "${conversation.name}" has ${conversation.turns.length} turn(s) but the request is at turn ${turnIndex} (${turnIndex} assistant message(s) already in messages)`,
        "script_exhausted",
        ctx,
      );
    }
    turn = conversation.turns[conversation.turns.length - 1]!;
  }
  const delayMs = turn.delayMs ?? 0;
  if (turn.error !== undefined) {
    const { status, message, type, code } = turn.error;
    return errorPlan(status, message, code ?? "injected_fault", {
      ...ctx,
      delayMs,
      ...(type ? { type } : {}),
    });
  }
  const toolCalls = plannedToolCalls(turn, options.newToolCallId ?? randomToolCallId);
  const content = turn.content ?? null;
  const outputChars =
    (content ?? "").length + toolCalls.reduce((n, tc) => n + tc.name.length + tc.arguments.length, 0);
  const promptTokens = estimatePromptTokens(messages);
  const completionTokens = Math.ceil(outputChars / 4);
  return {
    kind: "completion",
    conversation: conversation.name,
    turnIndex,
    model: script.model,
    content,
    toolCalls,
    finishReason: toolCalls.length > 0 ? "tool_calls" : "stop",
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      prompt_tokens_details: { cached_tokens: 0 },
    },
    delayMs,
    ...(turn.waitForFile !== undefined ? { waitForFile: turn.waitForFile } : {}),
    stream,
    includeUsage: stream && request.stream_options?.include_usage === true,
  };
}
