/** The fields of a chat-completions request body the gateway reads (everything else is passed through). */
export interface ChatBodyView {
  model: string | undefined;
  stream: boolean;
  includeUsage: boolean;
  /** The completion cap asked for (`max_completion_tokens`, else `max_tokens`), in tokens. */
  maxTokens: number | undefined;
  /** Routing text of the prompt (see {@link promptKey}). */
  prefixText: string;
}

function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    let s = "";
    for (const p of content) {
      if (p && typeof p === "object") {
        const part = p as { type?: unknown; text?: unknown };
        if (typeof part.text === "string") s += part.text;
        else s += `[${String(part.type ?? "part")}]`;
      }
    }
    return s;
  }
  return "";
}

/**
 * The routing text of a prompt: the tool definitions, then each message as role, content, tool calls (name and
 * arguments) and tool_call_id, with control-character separators. Requests of one agent loop grow by appending
 * messages, so the key of turn n is a prefix of the key of turn n+1; agents sharing a system prompt and tools
 * share a prefix. Not a tokenization: an approximation for prefix routing.
 */
export function promptKey(messages: unknown, tools?: unknown): string {
  let s = tools === undefined || tools === null ? "" : `${JSON.stringify(tools)}\u001d`;
  if (!Array.isArray(messages)) return s;
  for (const m of messages) {
    if (!m || typeof m !== "object") continue;
    const msg = m as Record<string, unknown>;
    s += `${String(msg.role ?? "")}\u001f${contentText(msg.content)}`;
    if (Array.isArray(msg.tool_calls)) {
      for (const tc of msg.tool_calls) {
        const fn = (tc as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
        s += `\u001f${String(fn?.name ?? "")}(${String(fn?.arguments ?? "")})`;
      }
    }
    if (typeof msg.tool_call_id === "string") s += `\u001f${msg.tool_call_id}`;
    s += "\u001e";
  }
  return s;
}

function positiveInt(x: unknown): number | undefined {
  return typeof x === "number" && Number.isInteger(x) && x > 0 ? x : undefined;
}

/**
 * Reads the routing-relevant fields of a parsed request body. @returns undefined when the body is not a JSON
 * object with a `messages` array (the gateway answers 400 `invalid_request`).
 */
export function viewChatBody(body: unknown): ChatBodyView | undefined {
  if (!body || typeof body !== "object" || Array.isArray(body)) return undefined;
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.messages)) return undefined;
  const so = b.stream_options as { include_usage?: unknown } | null | undefined;
  return {
    model: typeof b.model === "string" ? b.model : undefined,
    stream: b.stream === true,
    includeUsage: so?.include_usage === true,
    maxTokens: positiveInt(b.max_completion_tokens) ?? positiveInt(b.max_tokens),
    prefixText: promptKey(b.messages, b.tools),
  };
}

/**
 * The body to send upstream for a request whose parsed body is `parsed` (an object, see {@link viewChatBody}) and
 * raw bytes `raw`. A stream that did not ask for `stream_options.include_usage` gets it added (the gateway counts
 * tokens from the final usage event), and `strip` says that event must be removed before the client sees the
 * stream; any other request goes upstream byte for byte. Does not change `parsed`.
 */
export function upstreamBody(
  parsed: unknown,
  raw: Buffer,
  view: ChatBodyView,
): { body: Buffer; strip: boolean } {
  if (!view.stream || view.includeUsage) return { body: raw, strip: false };
  const obj = parsed as Record<string, unknown>;
  const so = obj.stream_options && typeof obj.stream_options === "object" ? obj.stream_options : {};
  return {
    body: Buffer.from(JSON.stringify({ ...obj, stream_options: { ...so, include_usage: true } })),
    strip: true,
  };
}
