import type { ServerResponse } from "node:http";
import { completionObject, errorBody, type ResponseMeta, streamEvents } from "./openai-format.ts";
import { type ChatMessage, type CompletionPlan, errorPlan, messageText } from "./respond.ts";
import { sleep, write } from "./stream-io.ts";

/** Fault injection of a replica. Rates are probabilities in [0, 1], drawn per request from a seeded PRNG. */
export interface FaultOptions {
  /** Probability of answering a 5xx error instead of the completion. */
  errorRate?: number;
  /** Status of those errors (500–599). Default 500. */
  errorStatus?: number;
  /** Probability of answering 429 `rate_limited`. */
  rateLimitRate?: number;
  /** Probability of stalling: the response head is sent (streams) and then nothing more for `stallMs`. */
  stallRate?: number;
  /** Length of a stall (ms); 0 (default) stalls until the client goes away. */
  stallMs?: number;
  /** Probability of dropping the connection mid-stream (after `dropAfterChunks` chunks; non-streams: before the body). */
  dropRate?: number;
  /** Chunks sent before a drop. Default 2. */
  dropAfterChunks?: number;
  /** When true, `/health` answers 503 (the chat endpoint still works). */
  unhealthy?: boolean;
}

/** Options of the SGLang replica simulator (`startSimLlm({ replica })`, CLI `--replica`). */
export interface ReplicaOptions {
  /** Replica name: the `x-sim-replica` response header and the metrics label. Default "replica". */
  name?: string;
  /** Fixed part of the time to first token (ms). Default: the script's `latency.ttftMs`, else 0. */
  ttftMs?: number;
  /** Decode speed of one request (tokens/s). Default: the script's `latency.tokensPerSecond` (unpaced if unset). */
  tokensPerSecond?: number;
  /**
   * Prefill speed for uncached prompt tokens (tokens/s), shared by all requests of the replica (one prefill lane,
   * first come first served): a cache miss on a long prompt delays every first token behind it. Unset: free.
   */
  prefillTokensPerSecond?: number;
  /** Prefix-cache capacity (tokens, LRU). Default 1 000 000; 0 disables the cache. */
  cacheTokens?: number;
  /** Prefix-cache block size (chars; tokens are chars/4). Default 64. */
  cacheBlockChars?: number;
  /** Requests decoded at once; later ones wait in a FIFO queue. Default unlimited. */
  maxRunningRequests?: number;
  /** Queue length beyond which requests get 429. Default unlimited. */
  maxQueuedRequests?: number;
  /** Fault injection (changeable at run time with `setFaults` or `POST /sim/faults`). */
  faults?: FaultOptions;
  /** PRNG seed of the fault draws. Default 1. */
  seed?: number;
}

/** Counters of a replica (also exported on `/metrics`). */
export interface ReplicaStats {
  running: number;
  queued: number;
  requests: number;
  promptTokens: number;
  cachedTokens: number;
  generationTokens: number;
  /** cachedTokens / promptTokens over the replica's lifetime (0 when no prompt yet). */
  cacheHitRate: number;
  faultsInjected: number;
}

/** mulberry32: a small deterministic PRNG returning numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** cyrb53: a fast 53-bit string hash, chained through `seed`. */
function cyrb53(str: string, seed: number): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** The text a replica caches for a prompt: every message's role, text and tool calls, in order. */
export function promptText(messages: readonly ChatMessage[]): string {
  let s = "";
  for (const m of messages) {
    s += `${m.role}\u001f${messageText(m)}`;
    for (const tc of m.tool_calls ?? [])
      s += `\u001f${tc.function?.name ?? ""}(${tc.function?.arguments ?? ""})`;
    s += "\u001e";
  }
  return s;
}

/**
 * A replica's radix-style prefix cache, approximated by chained block hashes with LRU eviction: a prompt is cut
 * into blocks of `blockChars`; block i is cached under hash(block i, key of block i−1). A lookup counts the
 * leading blocks present; every block of the prompt is then (re)inserted as most recently used.
 */
export class PrefixCache {
  private readonly blocks = new Map<number, true>();
  private readonly capacity: number;
  readonly blockChars: number;

  /** @param capacityTokens cache size in tokens (blocks hold blockChars/4 tokens); 0 disables the cache. */
  constructor(capacityTokens: number, blockChars = 64) {
    this.blockChars = Math.max(4, Math.floor(blockChars));
    this.capacity = Math.floor(capacityTokens / (this.blockChars / 4));
  }

  /** Looks `text` up and inserts it. @returns the number of leading chars that were cached (whole blocks). */
  lookupAndInsert(text: string): number {
    if (this.capacity <= 0) return 0;
    let h = 0;
    let matched = 0;
    let contiguous = true;
    const n = Math.floor(text.length / this.blockChars);
    for (let i = 0; i < n; i++) {
      h = cyrb53(text.slice(i * this.blockChars, (i + 1) * this.blockChars), h);
      if (contiguous && this.blocks.has(h)) matched += this.blockChars;
      else contiguous = false;
      this.blocks.delete(h);
      this.blocks.set(h, true);
    }
    while (this.blocks.size > this.capacity) this.blocks.delete(this.blocks.keys().next().value!);
    return matched;
  }

  /** Cached blocks. */
  get size(): number {
    return this.blocks.size;
  }
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * The SGLang replica simulator: a bounded number of running requests with a FIFO queue, a shared prefill lane,
 * a prefix cache that shortens the first token and fills `usage.prompt_tokens_details.cached_tokens`, paced
 * decoding, fault injection, and SGLang-like Prometheus gauges.
 */
export class Replica {
  readonly name: string;
  private readonly options: ReplicaOptions;
  private faults: FaultOptions;
  private readonly random: () => number;
  private readonly cache: PrefixCache;
  private readonly maxRunning: number;
  private readonly maxQueued: number;
  private readonly waiters: { start: () => void; signal: AbortSignal }[] = [];
  private prefillFreeAt = 0;
  private readonly stats = {
    running: 0,
    requests: 0,
    promptTokens: 0,
    cachedTokens: 0,
    generationTokens: 0,
    faultsInjected: 0,
  };
  private readonly defaults: { ttftMs: number; tokensPerSecond: number | undefined };

  constructor(options: ReplicaOptions, scriptLatency?: { ttftMs?: number; tokensPerSecond?: number }) {
    this.options = options;
    this.name = options.name ?? "replica";
    this.faults = { ...options.faults };
    this.random = mulberry32(options.seed ?? 1);
    this.cache = new PrefixCache(options.cacheTokens ?? 1_000_000, options.cacheBlockChars ?? 64);
    this.maxRunning = options.maxRunningRequests ?? Number.POSITIVE_INFINITY;
    this.maxQueued = options.maxQueuedRequests ?? Number.POSITIVE_INFINITY;
    this.defaults = {
      ttftMs: options.ttftMs ?? scriptLatency?.ttftMs ?? 0,
      tokensPerSecond: options.tokensPerSecond ?? scriptLatency?.tokensPerSecond,
    };
  }

  /** Replaces (merges) the fault settings. @returns the settings now in force. */
  setFaults(faults: FaultOptions): FaultOptions {
    this.faults = { ...this.faults, ...faults };
    return { ...this.faults };
  }

  /** The fault settings in force. */
  getFaults(): FaultOptions {
    return { ...this.faults };
  }

  /** Whether `/health` should answer 200. */
  get healthy(): boolean {
    return this.faults.unhealthy !== true;
  }

  /** Current counters. */
  getStats(): ReplicaStats {
    const s = this.stats;
    return {
      ...s,
      queued: this.waiters.length,
      cacheHitRate: s.promptTokens === 0 ? 0 : s.cachedTokens / s.promptTokens,
    };
  }

  /** Prometheus text exposition of the replica's SGLang-like metrics. */
  metricsText(model: string): string {
    const s = this.getStats();
    const l = `{model_name=${JSON.stringify(model)},replica=${JSON.stringify(this.name)}}`;
    const lines = [
      ["sglang:num_running_reqs", "gauge", "Requests being decoded.", s.running],
      ["sglang:num_queue_reqs", "gauge", "Requests waiting for a running slot.", s.queued],
      ["sglang:cache_hit_rate", "gauge", "Cached prompt tokens / prompt tokens since start.", s.cacheHitRate],
      ["sglang:prompt_tokens_total", "counter", "Prompt tokens processed.", s.promptTokens],
      [
        "sglang:cached_tokens_total",
        "counter",
        "Prompt tokens served from the prefix cache.",
        s.cachedTokens,
      ],
      ["sglang:generation_tokens_total", "counter", "Tokens generated.", s.generationTokens],
      ["sglang:num_requests_total", "counter", "Chat completion requests received.", s.requests],
      [
        "sim_llm_faults_injected_total",
        "counter",
        "Injected faults (5xx, 429, stalls, drops).",
        s.faultsInjected,
      ],
    ] as const;
    return `${lines.map(([name, type, help, v]) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}${l} ${v}`).join("\n")}\n`;
  }

  private draw(rate: number | undefined): boolean {
    return rate !== undefined && rate > 0 && this.random() < rate;
  }

  private acquire(signal: AbortSignal): Promise<boolean> {
    if (this.stats.running < this.maxRunning && this.waiters.length === 0) {
      this.stats.running++;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const w = {
        signal,
        start: () => {
          signal.removeEventListener("abort", onAbort);
          this.stats.running++;
          resolve(true);
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(false);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  private release(): void {
    this.stats.running--;
    while (this.stats.running < this.maxRunning && this.waiters.length > 0) this.waiters.shift()!.start();
  }

  /**
   * Serves one completion plan as this replica: faults, admission, prefix cache, prefill, paced decode.
   * `messages` are the request's messages (for the cache). The response is written to `res`.
   */
  async serve(
    res: ServerResponse,
    plan: CompletionPlan,
    messages: readonly ChatMessage[],
    meta: ResponseMeta,
    signal: AbortSignal,
  ): Promise<void> {
    this.stats.requests++;
    const headers = { "x-sim-replica": this.name };
    const f = this.faults;
    if (this.draw(f.errorRate)) {
      this.stats.faultsInjected++;
      const status = f.errorStatus ?? 500;
      sendJson(
        res,
        status,
        errorBody(errorPlan(status, `${this.name}: injected server error`, "injected_fault")),
        headers,
      );
      return;
    }
    if (this.draw(f.rateLimitRate)) {
      this.stats.faultsInjected++;
      sendJson(
        res,
        429,
        errorBody(errorPlan(429, `${this.name}: injected rate limit`, "rate_limited")),
        headers,
      );
      return;
    }
    if (this.waiters.length >= this.maxQueued && this.stats.running >= this.maxRunning) {
      sendJson(res, 429, errorBody(errorPlan(429, `${this.name}: queue full`, "queue_full")), headers);
      return;
    }
    if (!(await this.acquire(signal))) return;
    try {
      await this.run(res, plan, messages, meta, signal, headers);
    } finally {
      this.release();
    }
  }

  private async run(
    res: ServerResponse,
    plan: CompletionPlan,
    messages: readonly ChatMessage[],
    meta: ResponseMeta,
    signal: AbortSignal,
    headers: Record<string, string>,
  ): Promise<void> {
    const f = this.faults;
    const cachedChars = this.cache.lookupAndInsert(promptText(messages));
    const promptTokens = plan.usage.prompt_tokens;
    const cached = Math.min(promptTokens, Math.floor(cachedChars / 4));
    const usage = { ...plan.usage, prompt_tokens_details: { cached_tokens: cached } };
    const withCache: CompletionPlan = { ...plan, usage };
    this.stats.promptTokens += promptTokens;
    this.stats.cachedTokens += cached;
    this.stats.generationTokens += plan.usage.completion_tokens;

    // Time to first token: fixed part + waiting for the shared prefill lane + prefill of the uncached tokens.
    const now = Date.now();
    const prefillTps = this.options.prefillTokensPerSecond;
    let firstTokenAt = now + this.defaults.ttftMs;
    if (prefillTps !== undefined && prefillTps > 0) {
      const start = Math.max(now, this.prefillFreeAt);
      this.prefillFreeAt = start + ((promptTokens - cached) / prefillTps) * 1000;
      firstTokenAt = Math.max(firstTokenAt, this.prefillFreeAt);
    }
    const stall = this.draw(f.stallRate);
    const drop = this.draw(f.dropRate);
    if (stall || drop) this.stats.faultsInjected++;
    const tps = this.defaults.tokensPerSecond;

    if (!plan.stream) {
      const decodeMs = tps ? (plan.usage.completion_tokens / tps) * 1000 : 0;
      if (stall && !(await sleep(f.stallMs || 2 ** 31 - 1, signal))) return;
      if (!(await sleep(firstTokenAt - Date.now() + decodeMs, signal))) return;
      if (drop) {
        res.socket?.destroy();
        return;
      }
      sendJson(res, 200, completionObject(withCache, meta), headers);
      return;
    }
    res.writeHead(200, {
      ...headers,
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    res.flushHeaders();
    if (stall && !(await sleep(f.stallMs || 2 ** 31 - 1, signal))) return;
    if (!(await sleep(firstTokenAt - Date.now(), signal))) return;
    let sent = 0;
    for (const ev of streamEvents(withCache, meta)) {
      if (sent > 0 && tps !== undefined && ev.tokens > 0) {
        if (!(await sleep((ev.tokens / tps) * 1000, signal))) return;
      }
      if (signal.aborted) return;
      if (drop && sent >= (f.dropAfterChunks ?? 2)) {
        res.socket?.destroy();
        return;
      }
      const data = `data: ${JSON.stringify(ev.chunk)}\n\n`;
      // Before a drop, wait until each chunk reached the socket so the client really sees `sent` chunks.
      if (drop) await new Promise<void>((resolve) => res.write(data, () => resolve()));
      else await write(res, data);
      sent++;
    }
    res.end("data: [DONE]\n\n");
  }
}
