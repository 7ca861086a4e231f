import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Bus, connectBus, KvActor, type NatsServerHandle, startNatsServer } from "@longshot/bus";
import { Buckets, Subjects } from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { makeRepo, startNodeProcess, tempDir, waitFor } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCodec } from "../src/domain/run-codec.ts";

// The root planner reads the target repository through its tools before it plans: the real planner process
// (PLANNER_TOOL_ROUNDS=3) on a real nats-server, a real git repository, and sim-llm as the model, scripted to
// call read_file and grep, then four hostile calls, then to answer. sim-llm's --record file shows what the
// model was given; the run state in KV shows what the planner kept.

const root = new URL("../../../", import.meta.url).pathname;
const log = createLogger({ service: "test", level: "silent" });
let nats: NatsServerHandle;
let bus: Bus;
let dir: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let head: string;
let recordPath: string;
/** A file a hostile `--output=<file>` argument would create if it ever reached git. */
let outFile: string;
const children: ChildProcess[] = [];
const plannerLines: { level: number; msg: string; toolCalls?: number }[] = [];

const CALC = "export function add(a: number, b: number): number {\n  return a + b;\n}\n";
const PLAN = JSON.stringify({
  scratchpad: "calc.ts has add(a, b); sub is missing",
  tasks: [
    {
      id: "calc-sub",
      description: "Add export function sub(a: number, b: number): number to src/calc.ts next to add.",
      scope: ["src/calc.ts"],
    },
  ],
});

/** Starts `node <main>` (repo-relative) in the scratch dir; the child is stopped after all. */
async function startProcess(
  main: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  onLine?: (line: string) => void,
): Promise<RegExpExecArray> {
  const p = await startNodeProcess(join(root, main), args, {
    cwd: dir.path,
    env,
    ready,
    ...(onLine ? { onLine } : {}),
  });
  children.push(p.child);
  return p.match;
}

beforeAll(async () => {
  nats = await startNatsServer();
  bus = await connectBus({ servers: nats.url, name: "tools-test", log });
  await bus.ensureTopology();
  dir = await tempDir("longshot-planner-tools-");
  repo = join(dir.path, "target");
  recordPath = join(dir.path, "requests.jsonl");
  outFile = join(dir.path, "owned");
  head = await makeRepo(repo, {
    "SPEC.md": "# Calculator\nadd and sub.\n",
    "src/calc.ts": CALC,
    "src/index.ts": "export * from './calc.ts';\n",
  });
  const script = {
    model: "sim-tools",
    conversations: [
      {
        name: "planner",
        match: { system: "You are the root planner" },
        after: "error",
        turns: [
          {
            toolCalls: [
              { name: "read_file", arguments: { path: "src/calc.ts" } },
              { name: "grep", arguments: { pattern: "export (function|\\*)", path: "src" } },
            ],
          },
          {
            toolCalls: [
              { name: "read_file", arguments: { path: "../../etc/passwd" } },
              { name: "read_file", arguments: { path: `--output=${outFile}` } },
              { name: "grep", arguments: { pattern: "x", path: `--output=${outFile}` } },
              { name: "git_log", arguments: { n: 1_000_000_000 } },
            ],
          },
          { content: PLAN },
        ],
      },
    ],
  };
  await writeFile(join(dir.path, "script.json"), JSON.stringify(script));
  const sim = await startProcess(
    "services/sim-llm/src/main.ts",
    ["--script", join(dir.path, "script.json"), "--port", "0", "--record", recordPath],
    { ...process.env },
    /listening on (http\S+)/,
  );
  await startProcess(
    "services/planner/src/main.ts",
    [],
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NATS_URL: nats.url,
      LLM_BASE_URL: sim[1],
      LLM_MODEL: "sim-tools",
      LONGSHOT_STATE_DIR: join(dir.path, "state"),
      PLANNER_TOOL_ROUNDS: "3",
      LOG_LEVEL: "info",
    },
    /"msg":"started"/,
    (line) => {
      try {
        plannerLines.push(JSON.parse(line));
      } catch {
        // not a log line
      }
    },
  );
}, 60_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGTERM");
  await bus?.close();
  await nats?.stop();
  await dir?.cleanup();
});

type Sent = { role: string; content?: string | null; tool_calls?: { id: string }[]; tool_call_id?: string };
type Recorded = {
  turnIndex: number;
  request: { messages: Sent[]; tools?: { function: { name: string } }[]; tool_choice?: string };
};

describe("the root planner with repository tools", () => {
  it("reads the repository at the planned commit, gets errors for hostile arguments, plans, and keeps only the plan in its conversation", async () => {
    const planned = bus.nc.subscribe(Subjects.event("tools-1", "task.planned"), { max: 1 });
    await bus.js.publish(
      Subjects.request,
      JSON.stringify({ runId: "tools-1", prompt: "Add sub to the calculator", repo }),
    );
    for await (const m of planned)
      expect(m.json<{ data: { task: { id: string } } }>().data.task.id).toBe("calc-sub");

    // Three model calls: two answered with tool results, then the plan.
    const recorded = (await readFile(recordPath, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Recorded);
    expect(recorded.map((r) => r.turnIndex)).toEqual([0, 1, 2]);
    expect(recorded[0]!.request.tools!.map((t) => t.function.name)).toEqual([
      "read_file",
      "list",
      "grep",
      "git_log",
    ]);
    expect(recorded.map((r) => r.request.tool_choice)).toEqual(["auto", "auto", "auto"]);
    expect(recorded[0]!.request.messages.at(-1)!.content).toContain(`at ${head.slice(0, 12)}`);

    // The second call carries the file and the grep hits, read from git at the snapshot's commit.
    const results = (r: Recorded) =>
      r.request.messages.filter((m) => m.role === "tool").map((m) => m.content!);
    const [file, hits] = results(recorded[1]!);
    expect(file).toBe(
      "src/calc.ts (lines 1-3 of 3):\n1\texport function add(a: number, b: number): number {\n2\t  return a + b;\n3\t}",
    );
    expect(hits).toBe(
      "src/calc.ts:1:export function add(a: number, b: number): number {\nsrc/index.ts:1:export * from './calc.ts';\n",
    );

    // The hostile calls got clear errors and ran nothing.
    const hostile = results(recorded[2]!).slice(2);
    expect(hostile).toEqual([
      expect.stringMatching(/^error: invalid arguments for read_file: path: must not contain '\.\.'/),
      expect.stringMatching(/^error: invalid arguments for read_file: path: must not start with '-'/),
      expect.stringMatching(/^error: invalid arguments for grep: path: must not start with '-'/),
      expect.stringMatching(/^error: invalid arguments for git_log: n: Too big/),
    ]);
    expect(existsSync(outFile)).toBe(false);
    // Every tool result answers its call, in order.
    const third = recorded[2]!.request.messages;
    const callIds = third.flatMap((m) => m.tool_calls ?? []).map((c) => c.id);
    expect(third.filter((m) => m.role === "tool").map((m) => m.tool_call_id)).toEqual(callIds);

    // The planner kept the system prompt, its message and the plan: not the tool exchange.
    const kv = await bus.kv(Buckets.runs);
    const state = (await KvActor.load(kv, "tools-1", runCodec))!.state;
    expect(state.conversation.map((t) => t.role)).toEqual(["system", "user", "assistant"]);
    expect(state.conversation[2]!.content).toBe(PLAN);
    expect(JSON.stringify(state.conversation)).not.toContain("return a + b");
    expect(state.turnCount).toBe(3);
    const turns = await bus.kv(Buckets.plannerTurns);
    const keys: string[] = [];
    for await (const k of await turns.keys("tools-1.>")) keys.push(k);
    expect(keys.sort()).toEqual(["tools-1.0", "tools-1.1", "tools-1.2"]);

    // The log line of the iteration says how many tool calls the model made.
    const line = await waitFor(() => plannerLines.find((l) => l.msg === "planned"), 10_000);
    expect(line.toolCalls).toBe(6);
    expect(plannerLines.filter((l) => l.level >= 50)).toEqual([]);
  });
});
