/** `usage` of an OpenAI chat completion (only the fields the gateway counts). */
export interface WireUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number } | null;
}

/** Normalized token counts read from a {@link WireUsage}. */
export interface UsageCounts {
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
}

/** Converts a wire `usage` to counts (missing numbers count 0). @returns undefined when `u` is not an object. */
export function usageCounts(u: unknown): UsageCounts | undefined {
  if (!u || typeof u !== "object") return undefined;
  const w = u as WireUsage;
  const n = (x: unknown) => (typeof x === "number" && Number.isFinite(x) && x > 0 ? x : 0);
  return {
    promptTokens: n(w.prompt_tokens),
    completionTokens: n(w.completion_tokens),
    cachedTokens: n(w.prompt_tokens_details?.cached_tokens),
  };
}

const USAGE_KEY = Buffer.from('"usage"');

/**
 * Token counts of a non-streaming chat completion body. Cheap path: the last unescaped `"usage"` key, the object
 * after it cut out by brace counting (strings skipped) and parsed alone — OpenAI-compatible servers put `usage`
 * at the top level, and a key inside a message's text is escaped (`\"usage\"`). If that finds no usage object,
 * the whole body is parsed. @returns undefined when the body has no usage (or is not JSON).
 */
export function usageFromBody(body: Buffer): UsageCounts | undefined {
  const key = body.lastIndexOf(USAGE_KEY);
  if (key > 0 && body[key - 1] !== 0x5c) {
    let i = key + USAGE_KEY.length;
    while (i < body.length && (body[i] === 0x20 || body[i] === 0x0a || body[i] === 0x0d || body[i] === 0x09))
      i++;
    if (body[i] === 0x3a /* : */) {
      i++;
      while (i < body.length && body[i] !== 0x7b /* { */ && body[i] !== 0x6e /* n(ull) */) i++;
      const start = i;
      let depth = 0;
      let inString = false;
      for (; i < body.length; i++) {
        const c = body[i];
        if (inString) {
          if (c === 0x5c) i++;
          else if (c === 0x22) inString = false;
        } else if (c === 0x22) inString = true;
        else if (c === 0x7b) depth++;
        else if (c === 0x7d && --depth === 0) {
          try {
            const counts = usageCounts(JSON.parse(body.toString("utf8", start, i + 1)));
            if (counts) return counts;
          } catch {
            // fall through to the whole-body parse
          }
          break;
        }
      }
    }
  }
  try {
    return usageCounts((JSON.parse(body.toString("utf8")) as { usage?: unknown }).usage);
  } catch {
    return undefined;
  }
}

const LF_LF = Buffer.from("\n\n");

/**
 * Watches an SSE byte stream for the OpenAI usage chunk, without re-encoding it.
 * - passthrough mode (`strip` false): `push` returns the chunk itself, unchanged; complete events are scanned
 *   on the side.
 * - strip mode (`strip` true, used when the gateway added `stream_options.include_usage` itself): `push`
 *   returns only whole events and drops the usage-only event (`choices: []` plus `usage`), so the client gets
 *   exactly the stream it asked for. Partial events are held until their end arrives.
 * Events end with a blank line (`\n\n`; `\r\n` line ends are normalized by upstreams we know, and a `\r\n\r\n`
 * separator still contains no `\n\n` only in theory — such streams are passed through and only scanned).
 */
export class SseUsageTap {
  private pending: Buffer = Buffer.alloc(0);
  private readonly strip: boolean;
  /** The last usage seen (the final usage chunk), if any. */
  usage: UsageCounts | undefined;
  /** Events seen so far. */
  events = 0;

  constructor(strip: boolean) {
    this.strip = strip;
  }

  /** Feeds upstream bytes. @returns the bytes to send to the client now (possibly empty). */
  push(chunk: Buffer): Buffer {
    const data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let start = 0;
    const keep: Buffer[] = [];
    for (;;) {
      const end = data.indexOf(LF_LF, start);
      if (end < 0) break;
      const event = data.subarray(start, end + 2);
      const dropped = this.scan(event);
      if (this.strip && !dropped) keep.push(event);
      start = end + 2;
    }
    this.pending = start >= data.length ? Buffer.alloc(0) : Buffer.from(data.subarray(start));
    if (!this.strip) return chunk;
    return keep.length === 1 ? keep[0]! : Buffer.concat(keep);
  }

  /** The held partial event at stream end (strip mode), to be flushed as-is. */
  flush(): Buffer {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    if (rest.length > 0) this.scan(rest);
    return this.strip ? rest : Buffer.alloc(0);
  }

  /** Scans one event. @returns whether it is a usage-only event (dropped in strip mode). */
  private scan(event: Buffer): boolean {
    this.events++;
    // Cheap filter: only events that mention "usage" are parsed.
    if (event.indexOf("usage") < 0) return false;
    const text = event.toString("utf8");
    let payload = "";
    for (const line of text.split("\n")) {
      if (line.startsWith("data:"))
        payload += line.slice(line.startsWith("data: ") ? 6 : 5).replace(/\r$/, "");
    }
    if (payload === "" || payload === "[DONE]") return false;
    try {
      const obj = JSON.parse(payload) as { usage?: unknown; choices?: unknown };
      const counts = usageCounts(obj.usage);
      if (counts === undefined) return false;
      this.usage = counts;
      return Array.isArray(obj.choices) && obj.choices.length === 0;
    } catch {
      return false;
    }
  }
}
