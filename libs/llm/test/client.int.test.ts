import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ChatClient, type ChatMessage, ModelOutputError } from "../src/client.ts";
import type { ToolSet } from "../src/tools.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../../..");
const SIM_MAIN = join(REPO_ROOT, "services/sim-llm/src/main.ts");

/** A sim-llm child process: its base URL and the per-request lines it logged (`--verbose`). */
interface Sim {
  url: string;
  requests: string[];
  /** The chat requests it received so far, as sent (its `--record` file). */
  recorded(): Promise<{ conversation?: string; turnIndex?: number; request: Record<string, unknown> }[]>;
  /** Resolves once at least `n` request lines were logged. */
  requestsLogged(n: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts `node services/sim-llm/src/main.ts --script <file> --port 0 --verbose` and waits for its URL line. */
async function startSim(dir: string, name: string, script: unknown): Promise<Sim> {
  const scriptPath = join(dir, `${name}.json`);
  const recordPath = join(dir, `${name}.requests.jsonl`);
  await writeFile(scriptPath, JSON.stringify(script));
  const child: ChildProcess = spawn(
    process.execPath,
    [SIM_MAIN, "--script", scriptPath, "--port", "0", "--verbose", "--record", recordPath],
    {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const requests: string[] = [];
  const stderr: string[] = [];
  const waiters: { n: number; done: () => void }[] = [];
  createInterface({ input: child.stderr! }).on("line", (line) => {
    stderr.push(line);
    if (!line.includes("POST /v1/chat/completions")) return;
    requests.push(line);
    for (const w of waiters.filter((x) => requests.length >= x.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.done();
    }
  });
  const exited = once(child, "exit");
  const url = await new Promise<string>((ok, fail) => {
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      const m = /^sim-llm listening on (\S+)$/.exec(line);
      if (m) ok(m[1]!);
    });
    void exited.then(([code]) =>
      fail(new Error(`sim-llm exited (${code}) before listening:\n${stderr.join("\n")}`)),
    );
  });
  return {
    url,
    requests,
    async recorded() {
      const text = await readFile(recordPath, "utf8").catch(() => "");
      return text
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l));
    },
    requestsLogged: (n) =>
      requests.length >= n ? Promise.resolve() : new Promise((done) => waiters.push({ n, done })),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}

const Plan = z.object({ tasks: z.array(z.object({ id: z.string() })) });
const From = z.object({ from: z.string() });

const FENCED_REPLY = 'Here is the plan:\n```json\n{"tasks":[{"id":"users"},{"id":"api"}]}\n```\nGood luck.';
const GARBAGE_REPLY = "Sorry, I cannot produce JSON right now.";
const REPAIRED_REPLY = '```json\n{"tasks":[{"id":"fixed"}]}\n```';

const SCRIPT_A = {
  model: "sim-a",
  conversations: [
    { name: "fenced", match: { user: "FENCED" }, turns: [{ content: FENCED_REPLY }] },
    {
      name: "repair",
      match: { user: "REPAIR" },
      after: "error",
      turns: [{ content: GARBAGE_REPLY }, { content: REPAIRED_REPLY }],
    },
    {
      name: "schema",
      match: { user: "SCHEMA" },
      after: "error",
      turns: [{ content: '{"tasks":"none"}' }, { content: '{"tasks":[]}' }],
    },
    {
      name: "garbage",
      match: { user: "GARBAGE" },
      after: "error",
      turns: [{ content: GARBAGE_REPLY }, { content: 'still not JSON {"tasks": [' }],
    },
    { name: "who", match: { user: "WHO" }, turns: [{ content: '{"from":"a"}' }] },
  ],
};
const SCRIPT_B = {
  model: "sim-b",
  conversations: [{ name: "who", match: { user: "WHO" }, turns: [{ content: '{"from":"b"}' }] }],
};

const ask = (user: string): ChatMessage[] => [
  { role: "system", content: "You are the root planner. Reply with JSON." },
  { role: "user", content: user },
];

describe("ChatClient against sim-llm", () => {
  let dir: string;
  let a: Sim;
  let b: Sim;
  let client: ChatClient;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "longshot-llm-test-"));
    [a, b] = await Promise.all([startSim(dir, "a", SCRIPT_A), startSim(dir, "b", SCRIPT_B)]);
    client = new ChatClient({
      endpoints: [{ name: "a", baseUrl: a.url, weight: 1 }],
      model: "sim-1",
      timeoutMs: 10_000,
      maxTokens: 1000,
    });
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("given a fenced JSON reply among prose, then completeJson returns the parsed value and one added turn", async () => {
    const res = await client.completeJson(ask("FENCED plan please"), Plan);
    expect(res.value).toEqual({ tasks: [{ id: "users" }, { id: "api" }] });
    expect(res.added).toEqual([{ role: "assistant", content: FENCED_REPLY }]);
    expect(res.usage.promptTokens).toBeGreaterThan(0);
    expect(res.usage.completionTokens).toBe(Math.ceil(FENCED_REPLY.length / 4));
    expect(res.usage.totalTokens).toBe(res.usage.promptTokens + res.usage.completionTokens);
  });

  it("given garbage then valid JSON, then the value comes back with assistant, repair, assistant turns and summed usage", async () => {
    const messages = ask("REPAIR plan please");
    const res = await client.completeJson(messages, Plan);
    expect(res.value).toEqual({ tasks: [{ id: "fixed" }] });
    expect(res.added).toHaveLength(3);
    expect(res.added[0]).toEqual({ role: "assistant", content: GARBAGE_REPLY });
    expect(res.added[1]!.role).toBe("user");
    expect(res.added[1]!.content).toContain("could not be used: not valid JSON");
    expect(res.added[2]).toEqual({ role: "assistant", content: REPAIRED_REPLY });

    // The same two calls made one by one: completeJson's usage is their sum.
    const first = await client.complete(messages);
    const second = await client.complete([...messages, ...res.added.slice(0, 2)]);
    expect(first.content).toBe(GARBAGE_REPLY);
    expect(second.content).toBe(REPAIRED_REPLY);
    expect(res.usage).toEqual({
      promptTokens: first.usage.promptTokens + second.usage.promptTokens,
      completionTokens: first.usage.completionTokens + second.usage.completionTokens,
      totalTokens: first.usage.totalTokens + second.usage.totalTokens,
    });
    expect(second.usage.promptTokens).toBeGreaterThan(first.usage.promptTokens);
  });

  it("given JSON that fails the schema, then the repair message names the failing path", async () => {
    const res = await client.completeJson(ask("SCHEMA plan please"), Plan);
    expect(res.value).toEqual({ tasks: [] });
    expect(res.added).toHaveLength(3);
    expect(res.added[1]!.content).toMatch(/could not be used: tasks: /);
  });

  it("given two garbage replies, then ModelOutputError is thrown", async () => {
    const err = await client.completeJson(ask("GARBAGE plan please"), Plan).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelOutputError);
    expect((err as Error).name).toBe("ModelOutputError");
    expect((err as Error).message).toContain("not valid JSON");
  });

  it("given two endpoints weighted 2:1, then 4 of 6 calls go to the first, interleaved smoothly", async () => {
    const weighted = new ChatClient({
      endpoints: [
        { name: "a", baseUrl: a.url, weight: 2 },
        { name: "b", baseUrl: b.url, weight: 1 },
      ],
      model: "sim-1",
      timeoutMs: 10_000,
      maxTokens: 1000,
    });
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) seen.push((await weighted.completeJson(ask(`WHO ${i}`), From)).value.from);
    expect(seen.filter((f) => f === "a")).toHaveLength(4);
    expect(seen.filter((f) => f === "b")).toHaveLength(2);
    expect(seen).toEqual(["a", "b", "a", "a", "b", "a"]);
    // The second server's own request log (--verbose) agrees: it served exactly the two "b" calls.
    await b.requestsLogged(2);
    expect(b.requests).toHaveLength(2);
    for (const line of b.requests) expect(line).toContain('conversation="who"');
  });
});

const PLAN = '{"tasks":[{"id":"t1"}]}';
const call = (name: string, args: Record<string, unknown>) => ({ name, arguments: args });
const SCRIPT_TOOLS = {
  model: "sim-tools",
  conversations: [
    {
      name: "look then plan",
      match: { user: "LOOK" },
      after: "error",
      turns: [
        { toolCalls: [call("echo", { x: 1 }), call("echo", { x: 2 })] },
        { content: "Reading one more.", toolCalls: [call("echo", { x: 3 })] },
        { content: PLAN },
      ],
    },
    {
      name: "keeps calling",
      match: { user: "GREEDY" },
      after: "error",
      // Under tool_choice "none" a real model answers; sim-llm replays its turn, so the last one carries both.
      turns: [
        { toolCalls: [call("echo", { x: 1 })] },
        { content: PLAN, toolCalls: [call("echo", { x: 2 })] },
      ],
    },
    {
      name: "many at once",
      match: { user: "MANY" },
      after: "error",
      turns: [
        {
          toolCalls: [
            call("echo", { x: 1 }),
            call("boom", {}),
            call("echo", { x: 3 }),
            call("echo", { x: 4 }),
          ],
        },
        { content: "not json" },
        { content: PLAN },
      ],
    },
    { name: "no tools", match: { user: "PLAIN" }, turns: [{ content: PLAN }] },
  ],
};

describe("ChatClient with tools against sim-llm", () => {
  let dir: string;
  let sim: Sim;
  let client: ChatClient;
  const ran: string[] = [];
  const tools: ToolSet = {
    definitions: [
      {
        type: "function",
        function: { name: "echo", description: "echoes", parameters: { type: "object", properties: {} } },
      },
    ],
    async run(name, argsJson) {
      ran.push(`${name} ${argsJson}`);
      if (name === "boom") throw new Error("tool exploded");
      return `echo ${argsJson} ${"#".repeat(100)}`;
    },
  };
  type Sent = { role: string; content?: string | null; tool_calls?: unknown[]; tool_call_id?: string };
  const sentOf = async (from: number) =>
    (await sim.recorded()).slice(from).map((r) => ({
      ...r,
      messages: r.request.messages as Sent[],
      tool_choice: r.request.tool_choice,
      tools: r.request.tools as { function: { name: string } }[] | undefined,
    }));

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "longshot-llm-tools-"));
    sim = await startSim(dir, "tools", SCRIPT_TOOLS);
    client = new ChatClient({
      endpoints: [{ name: "t", baseUrl: sim.url, weight: 1 }],
      model: "sim-tools",
      timeoutMs: 10_000,
      maxTokens: 1000,
    });
  });
  afterAll(async () => {
    await sim?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("runs the tool calls of each reply, sends their results, and keeps the exchange out of the added turns", async () => {
    ran.length = 0;
    const before = (await sim.recorded()).length;
    const res = await client.completeJson(ask("LOOK around first"), Plan, undefined, { tools, maxRounds: 6 });
    expect(res.value).toEqual({ tasks: [{ id: "t1" }] });
    expect(res.added).toEqual([{ role: "assistant", content: PLAN }]);
    expect(res.toolCalls).toBe(3);
    expect(ran).toEqual(['echo {"x":1}', 'echo {"x":2}', 'echo {"x":3}']);
    const sent = await sentOf(before);
    expect(sent.map((r) => r.turnIndex)).toEqual([0, 1, 2]);
    expect(sent.map((r) => r.tool_choice)).toEqual(["auto", "auto", "auto"]);
    expect(sent[0]!.tools!.map((t) => t.function.name)).toEqual(["echo"]);
    // The third request carries both assistant tool turns and one result per call, in order.
    const third = sent[2]!.messages;
    expect(third.map((m) => m.role)).toEqual([
      "system",
      "user",
      "assistant",
      "tool",
      "tool",
      "assistant",
      "tool",
    ]);
    expect(third[3]!.content).toBe(`echo {"x":1} ${"#".repeat(100)}`);
    expect(third[5]!.content).toBe("Reading one more.");
    expect(third[6]!.content).toContain('echo {"x":3}');
    const ids = [third[2]!.tool_calls, third[5]!.tool_calls].flat().map((c) => (c as { id: string }).id);
    expect([third[3], third[4], third[6]].map((m) => m!.tool_call_id)).toEqual(ids);
    // Usage sums the three calls (each prompt is longer than the one before).
    expect(res.usage.promptTokens).toBeGreaterThan(
      3 *
        Math.ceil(
          third
            .slice(0, 2)
            .map((m) => m.content)
            .join("").length / 4,
        ),
    );
    expect(res.usage.totalTokens).toBe(res.usage.promptTokens + res.usage.completionTokens);
  });

  it("after maxRounds replies with tool calls, asks once more with tool_choice none and takes that reply", async () => {
    ran.length = 0;
    const before = (await sim.recorded()).length;
    const res = await client.completeJson(ask("GREEDY model"), Plan, undefined, { tools, maxRounds: 1 });
    expect(res.value).toEqual({ tasks: [{ id: "t1" }] });
    expect(res.toolCalls).toBe(1);
    expect(ran).toEqual(['echo {"x":1}']);
    const sent = await sentOf(before);
    expect(sent.map((r) => r.tool_choice)).toEqual(["auto", "none"]);
  });

  it("runs at most maxCallsPerRound calls of one reply and within the output budget; a throwing tool is an error result; the repair keeps the exchange", async () => {
    ran.length = 0;
    const before = (await sim.recorded()).length;
    const res = await client.completeJson(ask("MANY calls"), Plan, undefined, {
      tools,
      maxRounds: 6,
      maxCallsPerRound: 3,
      maxTotalResultChars: 120,
    });
    expect(res.value).toEqual({ tasks: [{ id: "t1" }] });
    // The fourth call was past maxCallsPerRound, the third past the output budget: neither ran.
    expect(ran).toEqual(['echo {"x":1}', "boom {}"]);
    expect(res.toolCalls).toBe(2);
    expect(res.added.map((m) => m.role)).toEqual(["assistant", "user", "assistant"]);
    const sent = await sentOf(before);
    const results = sent[1]!.messages.filter((m) => m.role === "tool").map((m) => m.content);
    expect(results[0]).toMatch(/^echo \{"x":1\}/);
    expect(results[1]).toBe("error: tool exploded");
    expect(results[2]).toMatch(/^error: not run: the tool output budget of this request is used up/);
    expect(results[3]).toMatch(/^error: not run: at most 3 tool calls are run per reply/);
    // The repair request still carries the tool exchange before the unusable reply.
    expect(sent[2]!.messages.map((m) => m.role)).toEqual([
      "system",
      "user",
      "assistant",
      "tool",
      "tool",
      "tool",
      "tool",
      "assistant",
      "user",
    ]);
  });

  it("with maxRounds 0 (or no tools) offers none", async () => {
    const before = (await sim.recorded()).length;
    const a = await client.completeJson(ask("PLAIN one"), Plan, undefined, { tools, maxRounds: 0 });
    const b = await client.completeJson(ask("PLAIN two"), Plan);
    expect([a.toolCalls, b.toolCalls]).toEqual([0, 0]);
    const sent = await sentOf(before);
    expect(sent.map((r) => [r.tools, r.tool_choice])).toEqual([
      [undefined, undefined],
      [undefined, undefined],
    ]);
  });
});

describe("ChatClient reasoning switch", () => {
  it("sends chat_template_kwargs.enable_thinking when set, and nothing when not", async () => {
    const { createServer } = await import("node:http");
    const bodies: Array<Record<string, unknown>> = [];
    const server = createServer((req, res) => {
      let raw = "";
      req.on("data", (c: Buffer) => {
        raw += c.toString();
      });
      req.on("end", () => {
        bodies.push(JSON.parse(raw) as Record<string, unknown>);
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: "x",
            object: "chat.completion",
            created: 0,
            model: "m",
            choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: "ok" } }],
            usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1`;
    const client = (reasoning?: boolean) =>
      new ChatClient({
        endpoints: [{ name: "a", baseUrl: url, weight: 1 }],
        model: "m",
        timeoutMs: 5000,
        maxTokens: 16,
        ...(reasoning !== undefined ? { reasoning } : {}),
      });
    try {
      await client(false).complete([{ role: "user", content: "hi" }]);
      await client(true).complete([{ role: "user", content: "hi" }]);
      await client().complete([{ role: "user", content: "hi" }]);
      expect(bodies.map((b) => b.chat_template_kwargs)).toEqual([
        { enable_thinking: false },
        { enable_thinking: true },
        undefined,
      ]);
    } finally {
      server.close();
    }
  });
});
