import type { CompletionPlan, ErrorPlan } from "./respond.ts";

/** Identity shared by every object of one response. */
export interface ResponseMeta {
  /** `chatcmpl-…` id. */
  id: string;
  /** Unix time in seconds. */
  created: number;
}

/** Characters per content delta on a stream (≈ 4 estimated tokens). */
export const CONTENT_CHUNK_CHARS = 16;
/** Maximum characters per `function.arguments` delta on a stream (arguments always span ≥ 2 deltas when ≥ 2 chars). */
export const ARGUMENTS_CHUNK_CHARS = 24;

/** OpenAI error body for an {@link ErrorPlan}. */
export function errorBody(plan: ErrorPlan): {
  error: { message: string; type: string; code: string; param: null };
} {
  return { error: { ...plan.error, param: null } };
}

/** Non-streaming `chat.completion` object for a plan. */
export function completionObject(plan: CompletionPlan, meta: ResponseMeta): Record<string, unknown> {
  const message: Record<string, unknown> = { role: "assistant", content: plan.content, refusal: null };
  if (plan.toolCalls.length > 0) {
    message.tool_calls = plan.toolCalls.map((tc) => ({
      id: tc.id,
      type: "function",
      function: { name: tc.name, arguments: tc.arguments },
    }));
  }
  return {
    id: meta.id,
    object: "chat.completion",
    created: meta.created,
    model: plan.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: plan.finishReason }],
    usage: plan.usage,
  };
}

/** Splits a string into pieces of at most `size` code points (never splits a surrogate pair). */
export function splitText(text: string, size: number): string[] {
  const points = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < points.length; i += size) out.push(points.slice(i, i + size).join(""));
  return out;
}

/** One SSE event of a stream, with the estimated output tokens it carries (for pacing). */
export interface StreamEvent {
  chunk: Record<string, unknown>;
  /** Estimated output tokens in this chunk (0 for role/finish/usage chunks). */
  tokens: number;
}

/**
 * The `chat.completion.chunk` objects of a streamed plan, in order: a role chunk, content deltas, per tool call
 * a header delta (`index`, `id`, `type`, `function.name`, empty arguments) followed by argument deltas, a
 * finish chunk, and — when `plan.includeUsage` — a usage chunk with `choices: []`. `data: [DONE]` is not included.
 */
export function streamEvents(plan: CompletionPlan, meta: ResponseMeta): StreamEvent[] {
  const base = { id: meta.id, object: "chat.completion.chunk", created: meta.created, model: plan.model };
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  const events: StreamEvent[] = [{ chunk: chunk({ role: "assistant", content: "" }), tokens: 0 }];
  for (const piece of splitText(plan.content ?? "", CONTENT_CHUNK_CHARS)) {
    events.push({ chunk: chunk({ content: piece }), tokens: Math.ceil(piece.length / 4) });
  }
  plan.toolCalls.forEach((tc, index) => {
    events.push({
      chunk: chunk({
        tool_calls: [{ index, id: tc.id, type: "function", function: { name: tc.name, arguments: "" } }],
      }),
      tokens: Math.ceil(tc.name.length / 4),
    });
    // At least two argument deltas whenever possible, so clients must really concatenate.
    const size = Math.max(1, Math.min(ARGUMENTS_CHUNK_CHARS, Math.ceil(Array.from(tc.arguments).length / 2)));
    for (const piece of splitText(tc.arguments, size)) {
      events.push({
        chunk: chunk({ tool_calls: [{ index, function: { arguments: piece } }] }),
        tokens: Math.ceil(piece.length / 4),
      });
    }
  });
  events.push({ chunk: chunk({}, plan.finishReason), tokens: 0 });
  if (plan.includeUsage) events.push({ chunk: { ...base, choices: [], usage: plan.usage }, tokens: 0 });
  return events;
}
