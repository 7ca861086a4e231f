import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import OpenAI, { APIConnectionError, InternalServerError, RateLimitError } from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { type SimLlm, startSimLlm } from "../src/index.ts";

const MAIN = join(fileURLToPath(new URL("..", import.meta.url)), "src/main.ts");
const long = (n: number) => "The shared system prompt of every agent. ".repeat(n);
const sims: SimLlm[] = [];
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

async function replica(options: Parameters<typeof startSimLlm>[0]): Promise<{ sim: SimLlm; client: OpenAI }> {
  const sim = await startSimLlm(options);
  sims.push(sim);
  return { sim, client: new OpenAI({ baseURL: sim.url, apiKey: "x", maxRetries: 0 }) };
}

async function ttftOf(client: OpenAI, messages: OpenAI.ChatCompletionMessageParam[]) {
  const t0 = performance.now();
  let first = 0;
  let usage: OpenAI.CompletionUsage | undefined;
  const stream = await client.chat.completions.create({
    model: "sim-1",
    messages,
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (first === 0 && chunk.choices[0]?.delta.content) first = performance.now() - t0;
    if (chunk.usage) usage = chunk.usage;
  }
  return { ttft: first, usage: usage! };
}

describe("sim-llm as an SGLang replica", () => {
  it("reports cached tokens and answers faster once the prefix is cached", async () => {
    const { client, sim } = await replica({
      replica: { name: "r1", ttftMs: 5, prefillTokensPerSecond: 20_000 },
    });
    const system = { role: "system" as const, content: long(200) }; // ~2000 tokens ⇒ ~100 ms of prefill
    const first = await ttftOf(client, [system, { role: "user", content: "task A" }]);
    expect(first.usage.prompt_tokens_details?.cached_tokens).toBe(0);
    const second = await ttftOf(client, [system, { role: "user", content: "task B" }]);
    const cached = second.usage.prompt_tokens_details?.cached_tokens ?? 0;
    expect(cached).toBeGreaterThan(0.9 * second.usage.prompt_tokens - 20);
    expect(second.ttft).toBeLessThan(first.ttft);
    expect(first.ttft).toBeGreaterThanOrEqual(95);
    const metrics = await (await fetch(sim.url.replace("/v1", "/metrics"))).text();
    const rate = Number(/sglang:cache_hit_rate\{model_name="sim-1",replica="r1"\} (\S+)/.exec(metrics)![1]);
    expect(rate).toBeCloseTo(cached / (first.usage.prompt_tokens + second.usage.prompt_tokens), 6);
    expect(metrics).toContain('sglang:num_requests_total{model_name="sim-1",replica="r1"} 2');
  });

  it("queues beyond maxRunningRequests and refuses beyond maxQueuedRequests", async () => {
    const { client, sim } = await replica({
      // 40 tokens at 20 tok/s: the first request runs 2 s, so the queue is still full when the third arrives,
      // also on a loaded machine (at 400 tok/s a CI run saw it finish first and the third request served).
      replica: { maxRunningRequests: 1, maxQueuedRequests: 1, ttftMs: 0, tokensPerSecond: 20 },
      syntheticReplyTokens: 40,
    });
    const req = () =>
      client.chat.completions.create({ model: "sim-1", messages: [{ role: "user", content: "x" }] });
    const a = req();
    const b = req();
    // Wait until the replica holds one running and one queued request.
    for (
      let i = 0;
      i < 200 && !(sim.replica!.getStats().running === 1 && sim.replica!.getStats().queued === 1);
      i++
    ) {
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(sim.replica!.getStats()).toMatchObject({ running: 1, queued: 1 });
    const metrics = await (await fetch(sim.url.replace("/v1", "/metrics"))).text();
    expect(metrics).toContain('sglang:num_queue_reqs{model_name="sim-1",replica="replica"} 1');
    await expect(req()).rejects.toBeInstanceOf(RateLimitError);
    await Promise.all([a, b]);
    expect(sim.replica!.getStats()).toMatchObject({ running: 0, queued: 0, requests: 3 });
  });

  it("injects 5xx, 429, dropped streams and stalls, switchable at run time", async () => {
    const { client, sim } = await replica({ replica: { faults: { errorRate: 1, errorStatus: 503 } } });
    const msg = [{ role: "user" as const, content: "hi" }];
    const err = await client.chat.completions.create({ model: "sim-1", messages: msg }).catch((e) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect(err.status).toBe(503);

    const set = (faults: object) =>
      fetch(sim.url.replace("/v1", "/sim/faults"), { method: "POST", body: JSON.stringify(faults) }).then(
        (r) => r.json(),
      );
    expect(await set({ errorRate: 0, rateLimitRate: 1 })).toMatchObject({ errorRate: 0, rateLimitRate: 1 });
    await expect(client.chat.completions.create({ model: "sim-1", messages: msg })).rejects.toBeInstanceOf(
      RateLimitError,
    );

    await set({ rateLimitRate: 0, dropRate: 1, dropAfterChunks: 2 });
    const chunks: unknown[] = [];
    const dropped = await (async () => {
      const s = await client.chat.completions.create({ model: "sim-1", messages: msg, stream: true });
      for await (const c of s) chunks.push(c);
    })().catch((e) => e);
    expect(dropped).toBeInstanceOf(Error);
    expect(chunks).toHaveLength(2);

    await set({ dropRate: 0, stallRate: 1, stallMs: 0 });
    const stalled = await client.chat.completions
      .create({ model: "sim-1", messages: msg }, { timeout: 150 })
      .catch((e) => e);
    expect(stalled).toBeInstanceOf(APIConnectionError);

    await set({ stallRate: 0, unhealthy: true });
    expect((await fetch(sim.url.replace("/v1", "/health"))).status).toBe(503);
    await set({ unhealthy: false });
    expect((await fetch(sim.url.replace("/v1", "/health"))).status).toBe(200);
    const ok = await client.chat.completions.create({ model: "sim-1", messages: msg });
    expect(ok.choices[0]!.message.content).toContain("quick brown fox");
    expect(sim.replica!.getStats().faultsInjected).toBe(4);
  });

  it("runs from the CLI with replica flags and no script", async () => {
    const child = spawn(
      process.execPath,
      [MAIN, "--replica", "--name", "cli-1", "--model", "glm-5", "--reply-tokens", "8", "--error-rate", "0"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once("line", resolve);
        child.once("exit", (code) => reject(new Error(`exited ${code}`)));
      });
      const url = /^sim-llm listening on (\S+)$/.exec(line)![1]!;
      const res = await fetch(`${url}/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ messages: [{ role: "user", content: "hello" }] }),
      });
      expect(res.headers.get("x-sim-replica")).toBe("cli-1");
      const body = (await res.json()) as { model: string; usage: { completion_tokens: number } };
      expect(body.model).toBe("glm-5");
      expect(body.usage.completion_tokens).toBe(8);
    } finally {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
  });
});
