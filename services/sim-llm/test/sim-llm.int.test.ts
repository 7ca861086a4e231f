import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import OpenAI, { APIError, AuthenticationError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RequestRecord, type ScriptInput, type SimLlm, startSimLlm } from "../src/index.ts";

const WRITE_ARGS = {
  path: "src/users.ts",
  content: 'export const users = new Map<string, { name: string }>();\n// "quotes", unicode ✓ 😀\n',
};

const script: ScriptInput = {
  model: "sim-1",
  conversations: [
    {
      name: "greeter",
      match: { user: "/^say hello/i" },
      turns: [{ content: "Hello from the simulated model!" }],
    },
    {
      name: "worker",
      match: { system: "You are a worker" },
      turns: [
        {
          toolCalls: [
            { name: "write", arguments: WRITE_ARGS },
            { name: "bash", arguments: { command: "node --test" } },
          ],
        },
        { content: "Done." },
      ],
    },
    {
      name: "fault",
      match: { user: "fault" },
      turns: [{ error: { status: 503, message: "replica overloaded" } }],
    },
    { name: "exhausted", match: { user: "short" }, after: "error", turns: [{ content: "only once" }] },
  ],
};

let sim: SimLlm;
let client: OpenAI;
const lines: string[] = [];
const records: RequestRecord[] = [];

beforeAll(async () => {
  sim = await startSimLlm({ script, log: (l) => lines.push(l), onRequest: (r) => records.push(r) });
  client = new OpenAI({ baseURL: sim.url, apiKey: "anything", maxRetries: 0 });
});
afterAll(async () => {
  await sim?.close();
});

describe("sim-llm over HTTP with the openai SDK", () => {
  it("reports its URL and serves /health", async () => {
    expect(sim.url).toBe(`http://127.0.0.1:${sim.port}/v1`);
    const res = await fetch(`http://127.0.0.1:${sim.port}/health`);
    expect(res.status).toBe(200);
  });

  it("answers non-streaming content with usage", async () => {
    const res = await client.chat.completions.create({
      model: "sim-1",
      messages: [{ role: "user", content: "Say hello please" }],
    });
    expect(res.object).toBe("chat.completion");
    expect(res.choices[0]!.message.content).toBe("Hello from the simulated model!");
    expect(res.choices[0]!.finish_reason).toBe("stop");
    expect(res.usage).toEqual({
      prompt_tokens: Math.ceil("Say hello please".length / 4),
      completion_tokens: Math.ceil("Hello from the simulated model!".length / 4),
      total_tokens: Math.ceil(16 / 4) + Math.ceil(31 / 4),
      prompt_tokens_details: { cached_tokens: 0 },
    });
    expect(lines.at(-1)).toContain('conversation="greeter" turn=0 stream=false');
  });

  it("streams content in several chunks, with a final usage chunk when include_usage", async () => {
    const stream = await client.chat.completions.create({
      model: "sim-1",
      messages: [{ role: "user", content: "say hello" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let contentChunks = 0;
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe("chat.completion.chunk");
      for (const ch of chunk.choices) {
        if (ch.delta.content) {
          text += ch.delta.content;
          contentChunks++;
        }
        if (ch.finish_reason) finish = ch.finish_reason;
      }
      if (chunk.usage) {
        expect(chunk.choices).toEqual([]);
        usage = chunk.usage;
      }
    }
    expect(text).toBe("Hello from the simulated model!");
    expect(contentChunks).toBeGreaterThan(1);
    expect(finish).toBe("stop");
    expect(usage?.completion_tokens).toBe(Math.ceil(31 / 4));
    expect(usage?.total_tokens).toBe(usage!.prompt_tokens + usage!.completion_tokens);
  });

  it("omits the usage chunk without include_usage", async () => {
    const stream = await client.chat.completions.create({
      model: "sim-1",
      messages: [{ role: "user", content: "say hello" }],
      stream: true,
    });
    for await (const chunk of stream) expect(chunk.usage ?? undefined).toBeUndefined();
  });

  it("streams tool calls that reassemble intact", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "system", content: "You are a worker." },
      { role: "user", content: "## Task: users-store\n" },
    ];
    const stream = await client.chat.completions.create({
      model: "sim-1",
      messages,
      tools: [{ type: "function", function: { name: "write", parameters: { type: "object" } } }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const calls: { id?: string; name?: string; args: string; argDeltas: number }[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const ch of chunk.choices) {
        for (const tc of ch.delta.tool_calls ?? []) {
          calls[tc.index] ??= { args: "", argDeltas: 0 };
          const c = calls[tc.index]!;
          if (tc.id) c.id = tc.id;
          if (tc.function?.name) c.name = tc.function.name;
          if (tc.function?.arguments) {
            c.args += tc.function.arguments;
            c.argDeltas++;
          }
        }
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    expect(finish).toBe("tool_calls");
    expect(calls).toHaveLength(2);
    expect(calls[0]!.name).toBe("write");
    expect(JSON.parse(calls[0]!.args)).toEqual(WRITE_ARGS);
    expect(calls[0]!.argDeltas).toBeGreaterThan(1);
    expect(calls[1]!.name).toBe("bash");
    expect(JSON.parse(calls[1]!.args)).toEqual({ command: "node --test" });
    expect(calls[0]!.id).toMatch(/^call_/);
    expect(calls[0]!.id).not.toBe(calls[1]!.id);

    // The SDK's stream helper agrees, and the next turn (one assistant message) is the final text.
    const final = await client.chat.completions
      .stream({ model: "sim-1", messages, stream_options: { include_usage: true } })
      .finalChatCompletion();
    const toolCalls = final.choices[0]!.message.tool_calls ?? [];
    expect(toolCalls.map((t) => (t.type === "function" ? JSON.parse(t.function.arguments) : null))).toEqual([
      WRITE_ARGS,
      { command: "node --test" },
    ]);
    const next = await client.chat.completions.create({
      model: "sim-1",
      messages: [
        ...messages,
        final.choices[0]!.message as OpenAI.ChatCompletionMessageParam,
        ...toolCalls.map((t) => ({ role: "tool" as const, tool_call_id: t.id, content: "ok" })),
      ],
    });
    expect(next.choices[0]!.message.content).toBe("Done.");
    expect(next.usage!.prompt_tokens).toBeGreaterThan(10);
  });

  it("returns non-streaming tool calls in message.tool_calls", async () => {
    const res = await client.chat.completions.create({
      model: "sim-1",
      messages: [
        { role: "system", content: "You are a worker" },
        { role: "user", content: "x" },
      ],
    });
    expect(res.choices[0]!.finish_reason).toBe("tool_calls");
    const tc = res.choices[0]!.message.tool_calls![0]!;
    expect(tc.type).toBe("function");
    if (tc.type === "function") expect(JSON.parse(tc.function.arguments)).toEqual(WRITE_ARGS);
  });

  it("answers a non-streaming tool exchange turn by turn and records each request with its tool results", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "system", content: "You are a worker" },
      { role: "user", content: "non-streaming tool exchange" },
    ];
    const tools: OpenAI.ChatCompletionTool[] = [
      { type: "function", function: { name: "write", parameters: { type: "object" } } },
    ];
    const before = records.length;
    const first = await client.chat.completions.create({ model: "sim-1", messages, tools });
    const reply = first.choices[0]!.message;
    expect(reply.content).toBeNull();
    expect(reply.tool_calls!.map((t) => (t.type === "function" ? t.function.name : t.type))).toEqual([
      "write",
      "bash",
    ]);
    const results = reply.tool_calls!.map((t, i) => ({
      role: "tool" as const,
      tool_call_id: t.id,
      content: `result ${i}`,
    }));
    const second = await client.chat.completions.create({
      model: "sim-1",
      messages: [...messages, reply as OpenAI.ChatCompletionMessageParam, ...results],
      tools,
      tool_choice: "none",
    });
    expect(second.choices[0]!.finish_reason).toBe("stop");
    expect(second.choices[0]!.message.content).toBe("Done.");
    // What the model received, as sent: the second request carries the assistant's calls and both results.
    const seen = records.slice(before);
    expect(seen.map((r) => [r.conversation, r.turnIndex])).toEqual([
      ["worker", 0],
      ["worker", 1],
    ]);
    const sent = seen[1]!.request as unknown as { messages: Record<string, unknown>[]; tool_choice: string };
    expect(sent.tool_choice).toBe("none");
    expect(sent.messages.filter((m) => m.role === "tool")).toEqual([
      { role: "tool", tool_call_id: reply.tool_calls![0]!.id, content: "result 0" },
      { role: "tool", tool_call_id: reply.tool_calls![1]!.id, content: "result 1" },
    ]);
  });

  it("lists the model", async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => ({ id: m.id, object: m.object, owned_by: m.owned_by }))).toEqual([
      { id: "sim-1", object: "model", owned_by: "sim-llm" },
    ]);
  });

  it("surfaces a scripted error turn as APIError with its status (stream and not)", async () => {
    const err = await client.chat.completions
      .create({ model: "sim-1", messages: [{ role: "user", content: "fault" }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(503);
    expect((err as APIError).message).toContain("replica overloaded");
    const streamErr = await client.chat.completions
      .create({ model: "sim-1", messages: [{ role: "user", content: "fault" }], stream: true })
      .catch((e: unknown) => e);
    expect((streamErr as APIError).status).toBe(503);
  });

  it('answers 400 when the script ran out (after: "error") and when nothing matches', async () => {
    const ran = await client.chat.completions
      .create({
        model: "sim-1",
        messages: [
          { role: "user", content: "short" },
          { role: "assistant", content: "only once" },
          { role: "user", content: "again" },
        ],
      })
      .catch((e: unknown) => e as APIError);
    expect(ran).toBeInstanceOf(APIError);
    expect((ran as APIError).status).toBe(400);
    expect((ran as APIError).code).toBe("script_exhausted");
    const none = await client.chat.completions
      .create({ model: "sim-1", messages: [{ role: "user", content: "unmatched request" }] })
      .catch((e: unknown) => e as APIError);
    expect((none as APIError).status).toBe(400);
    expect((none as APIError).message).toContain("unmatched request");
    expect((none as APIError).message).toContain('"greeter", "worker", "fault", "exhausted"');
  });

  it("answers OpenAI-shaped errors for bad JSON and unknown routes", async () => {
    const bad = await fetch(`${sim.url}/chat/completions`, { method: "POST", body: "{nope" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: { type: "invalid_request_error", code: "invalid_json" },
    });
    const missing = await fetch(`${sim.url}/embeddings`, { method: "POST", body: "{}" });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: "not_found" } });
  });
});

describe("sim-llm options", () => {
  it("requires the API key when configured", async () => {
    const guarded = await startSimLlm({ script, apiKey: "sekret" });
    try {
      const wrong = new OpenAI({ baseURL: guarded.url, apiKey: "nope", maxRetries: 0 });
      const err = await wrong.models.list().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AuthenticationError);
      expect((err as APIError).status).toBe(401);
      const right = new OpenAI({ baseURL: guarded.url, apiKey: "sekret", maxRetries: 0 });
      expect((await right.models.list()).data[0]!.id).toBe("sim-1");
      expect((await fetch(`http://127.0.0.1:${guarded.port}/health`)).status).toBe(200);
    } finally {
      await guarded.close();
    }
  });

  it("honours delayMs and latency pacing", async () => {
    const paced = await startSimLlm({
      script: {
        latency: { ttftMs: 100, tokensPerSecond: 200 },
        conversations: [{ name: "slow", turns: [{ content: "x".repeat(160), delayMs: 100 }] }],
      },
    });
    try {
      const c = new OpenAI({ baseURL: paced.url, apiKey: "k", maxRetries: 0 });
      const t0 = performance.now();
      const stream = await c.chat.completions.create({
        model: "sim-1",
        messages: [{ role: "user", content: "go" }],
        stream: true,
      });
      let firstAt = 0;
      let text = "";
      for await (const chunk of stream) {
        const piece = chunk.choices[0]?.delta.content;
        if (piece !== undefined && firstAt === 0) firstAt = performance.now() - t0;
        text += piece ?? "";
      }
      const total = performance.now() - t0;
      expect(text).toBe("x".repeat(160));
      expect(firstAt).toBeGreaterThanOrEqual(190); // delayMs + ttftMs
      // 160 chars = 10 chunks of 4 tokens at 200 tok/s: 9 paced chunks × 20 ms after the first
      expect(total).toBeGreaterThanOrEqual(firstAt + 170);
    } finally {
      await paced.close();
    }
  });

  it("holds a waitForFile turn until the file exists", async () => {
    const dir = await mkdtemp(join(tmpdir(), "sim-gate-"));
    const gate = join(dir, "go");
    const gated = await startSimLlm({
      script: { conversations: [{ name: "gated", turns: [{ content: "released", waitForFile: gate }] }] },
    });
    try {
      const c = new OpenAI({ baseURL: gated.url, apiKey: "k", maxRetries: 0 });
      let answered = false;
      const reply = c.chat.completions
        .create({ model: "sim-1", messages: [{ role: "user", content: "go" }] })
        .then((r) => {
          answered = true;
          return r;
        });
      await new Promise((r) => setTimeout(r, 300));
      expect(answered).toBe(false);
      await writeFile(gate, "");
      expect((await reply).choices[0]!.message.content).toBe("released");
    } finally {
      await gated.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("closes while a client is mid-stream", async () => {
    const slow = await startSimLlm({
      script: {
        latency: { ttftMs: 0, tokensPerSecond: 10 },
        conversations: [{ name: "s", turns: [{ content: "y".repeat(400) }] }],
      },
    });
    const c = new OpenAI({ baseURL: slow.url, apiKey: "k", maxRetries: 0 });
    const stream = await c.chat.completions.create({
      model: "sim-1",
      messages: [{ role: "user", content: "go" }],
      stream: true,
    });
    const consumed = (async () => {
      for await (const _ of stream) {
        /* drain */
      }
    })();
    await slow.close();
    await expect(consumed).rejects.toThrow();
  });
});

describe("sim-llm CLI", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sim-llm-cli-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const main = fileURLToPath(new URL("../src/main.ts", import.meta.url));

  it("prints the listening URL, serves, logs with --verbose and exits 0 on SIGTERM", async () => {
    const path = join(dir, "script.json");
    await writeFile(path, JSON.stringify(script));
    const recordPath = join(dir, "requests.jsonl");
    const child = spawn(process.execPath, [main, "--port", "0", "--verbose", "--record", recordPath], {
      env: { ...process.env, SIM_SCRIPT: path },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      const rl = createInterface({ input: child.stdout });
      const [line] = (await once(rl, "line")) as [string];
      const m = /^sim-llm listening on (http:\/\/127\.0\.0\.1:\d+\/v1)$/.exec(line);
      expect(m, line).not.toBeNull();
      const c = new OpenAI({ baseURL: m![1]!, apiKey: "k", maxRetries: 0 });
      const res = await c.chat.completions.create({
        model: "sim-1",
        messages: [{ role: "user", content: "say hello" }],
      });
      expect(res.choices[0]!.message.content).toBe("Hello from the simulated model!");
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
      expect(stderr).toContain('conversation="greeter" turn=0 stream=false');
      // --record: one JSON line per request, as received.
      const recorded = (await readFile(recordPath, "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(recorded).toEqual([
        {
          conversation: "greeter",
          turnIndex: 0,
          request: { model: "sim-1", messages: [{ role: "user", content: "say hello" }] },
        },
      ]);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });

  it("exits 2 listing the problems of a bad script", async () => {
    const path = join(dir, "bad.json");
    await writeFile(path, JSON.stringify({ conversations: [{ name: "x", turns: [{}] }] }));
    const child = spawn(process.execPath, [main, "--script", path], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(2);
    expect(stderr).toContain("conversations[0].turns[0]: a turn needs content, toolCalls or error");
  });
});
