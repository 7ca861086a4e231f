import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ChatClient, type ChatMessage, ModelOutputError } from "../src/client.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../../..");
const SIM_MAIN = join(REPO_ROOT, "services/sim-llm/src/main.ts");

/** A sim-llm child process: its base URL and the per-request lines it logged (`--verbose`). */
interface Sim {
  url: string;
  requests: string[];
  /** Resolves once at least `n` request lines were logged. */
  requestsLogged(n: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts `node services/sim-llm/src/main.ts --script <file> --port 0 --verbose` and waits for its URL line. */
async function startSim(dir: string, name: string, script: unknown): Promise<Sim> {
  const scriptPath = join(dir, `${name}.json`);
  await writeFile(scriptPath, JSON.stringify(script));
  const child: ChildProcess = spawn(
    process.execPath,
    [SIM_MAIN, "--script", scriptPath, "--port", "0", "--verbose"],
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
