import { type ChildProcess, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Bus, connectBus } from "@longshot/bus";
import {
  Buckets,
  Consumers,
  type Envelope,
  type Handoff,
  HandoffMessage,
  Subjects,
  type Task,
  TaskMessage,
} from "@longshot/contracts";
import { createLogger } from "@longshot/log";
import { makeRepo, startTestNats, type TestNats, tempDir, waitFor } from "@longshot/testkit";
import type { Subscription } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DecompositionState } from "../src/domain/decomposition.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const PARENT_SCOPE = ["src/a.ts", "src/b.ts", "src/c.ts", "src/d.ts"];

const batch = (scratchpad: string, tasks: unknown[]) => ({ content: JSON.stringify({ scratchpad, tasks }) });
/** The subplanner's script: an atomic answer for "ATOMIC" parents; otherwise one batch of two, then done. */
const script = {
  model: "sim-sub",
  conversations: [
    {
      name: "subplanner looks first",
      match: { system: "You are a subplanner", user: "/LOOK-FIRST/" },
      after: "error",
      turns: [
        {
          toolCalls: [
            { name: "read_file", arguments: { path: "src/a.ts" } },
            { name: "list", arguments: { path: "src" } },
            { name: "read_file", arguments: { path: "../../../etc/passwd" } },
            { name: "git_log", arguments: { path: "--output=/tmp/longshot-owned", n: 5 } },
          ],
        },
        batch("src/a.ts is one comment; nothing to split", []),
      ],
    },
    {
      name: "subplanner atomic",
      match: { system: "You are a subplanner", user: "/ATOMIC/" },
      turns: [batch("one objective, atomic", [])],
    },
    {
      name: "subplanner",
      match: { system: "You are a subplanner" },
      turns: [
        batch("two halves", [
          // src/x.ts is outside the parent's scope and src/b.ts is claimed twice: both must be filtered.
          {
            id: "m1",
            description: "First half: a and b",
            scope: ["src/a.ts", "src/b.ts", "src/x.ts"],
            acceptance: "ok",
          },
          {
            id: "m2",
            description: "Second half: c and d",
            scope: ["src/b.ts", "src/c.ts", "src/d.ts"],
            acceptance: "ok",
          },
          { id: "m3", description: "Nothing left for me", scope: ["src/a.ts"], acceptance: "ok" },
        ]),
        batch("everything landed or was reported; nothing more", []),
      ],
    },
  ],
};

/** Collects decoded envelopes of a core subscription and lets a test await one matching a predicate. */
class Inbox<T> {
  readonly items: Envelope<T>[] = [];
  private waiters: { pred: (e: Envelope<T>) => boolean; resolve: (e: Envelope<T>) => void }[] = [];
  private readonly sub: Subscription;

  constructor(b: Bus, subject: string) {
    this.sub = b.nc.subscribe(subject, {
      callback: (_err, msg) => {
        const env = msg.json<Envelope<T>>();
        this.items.push(env);
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred(env)) return true;
          w.resolve(env);
          return false;
        });
      },
    });
  }

  /** Resolves with the first (already received or future) envelope matching `pred`; rejects after `ms`. */
  next(pred: (e: Envelope<T>) => boolean, ms = 30_000): Promise<Envelope<T>> {
    const have = this.items.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching message within ${ms} ms`)), ms);
      this.waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  stop(): void {
    this.sub.unsubscribe();
  }
}

interface Proc {
  child: ChildProcess;
  output(): string;
}

/** Spawns `node <args>` from the repo root, keeping the last 20k chars of its output for diagnostics. */
function spawnNode(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  return { child, output: () => out };
}

/** Resolves when the process printed `pattern`; rejects if it exits first. */
function printed(p: Proc, pattern: RegExp, ms = 30_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`not printed within ${ms} ms: ${pattern}\n${p.output()}`)),
      ms,
    );
    const check = () => {
      const m = pattern.exec(p.output());
      if (m) {
        clearTimeout(timer);
        p.child.stdout!.off("data", check);
        resolve(m);
      }
    };
    p.child.stdout!.on("data", check);
    p.child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code ?? signal}) before printing ${pattern}:\n${p.output()}`));
    });
    check();
  });
}

async function stopProc(p: Proc | undefined, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill(signal);
  await exited;
}

let dir: Awaited<ReturnType<typeof tempDir>>;
let nats: TestNats;
let bus: Bus;
let sim: Proc;
let simUrl: string;
let repo: string;
/** sim-llm's --record file: every model request as received. */
let recordPath: string;
let tasks: Inbox<Task>;
let handoffs: Inbox<Handoff>;
const procs: Proc[] = [];

/** Starts the real subplanner process and waits for its "started" log line. */
async function startSubplanner(): Promise<Proc> {
  const p = spawnNode([join(ROOT, "services/subplanner/src/main.ts")], {
    NATS_URL: nats.url,
    LLM_BASE_URL: simUrl,
    LLM_MODEL: "sim-sub",
    LONGSHOT_STATE_DIR: join(dir.path, "state"),
    LOG_LEVEL: "info",
  });
  procs.push(p);
  await printed(p, /"msg":"started"/);
  return p;
}

const parentTask = (runId: string, description: string): Task => ({
  id: "feature",
  runId,
  kind: "plan",
  description,
  scope: PARENT_SCOPE,
  acceptance: "node --test passes",
  branch: "worker/feature-big",
  priority: 5,
  depth: 0,
  attempt: 1,
  repo,
  baseBranch: "main",
});

const publishParent = (t: Task, id = `task-${t.runId}-${t.id}-${t.attempt}`) =>
  bus.publish(TaskMessage, ["decompose", t.runId], t, { runId: t.runId, taskId: t.id, id });

/** What the dispatcher would publish for a finished subtask attempt. */
async function handoffFor(t: Task, status: "complete" | "failed", handoffId?: string): Promise<void> {
  const h: Handoff = {
    taskId: t.id,
    runId: t.runId,
    status,
    summary: `${t.id} ${status}`,
    filesChanged: status === "complete" ? t.scope : [],
    concerns: status === "failed" ? ["tests failed"] : [],
    suggestions: ["add more tests"],
    metrics: {
      linesAdded: 5,
      linesRemoved: 1,
      filesCreated: 0,
      filesModified: t.scope.length,
      tokensUsed: 1000,
      toolCallCount: 4,
      durationMs: 1234,
    },
    branch: t.branch,
    ...(status === "complete" ? { head: "0123456789abcdef0123456789abcdef01234567" } : {}),
    task: t,
  };
  await bus.publish(HandoffMessage, [t.runId], h, {
    runId: t.runId,
    taskId: t.id,
    id: handoffId ?? `handoff-${t.runId}-${t.id}-${t.attempt}`,
  });
}

/** What the merger would publish for that handoff: merged when complete, skipped when failed. */
async function mergeFor(t: Task, status: "complete" | "failed"): Promise<void> {
  const meta = { taskId: t.id, id: `merge-${t.runId}-${t.id}-${t.attempt}` };
  if (status === "complete")
    await bus.publishEvent(
      "merge.merged",
      t.runId,
      {
        taskId: t.id,
        attempt: t.attempt,
        repo: t.repo,
        baseBranch: t.baseBranch,
        branch: t.branch,
        sha: "fedcba9876543210fedcba9876543210fedcba98",
        strategy: "rebase",
        rebased: true,
        attempts: 1,
      },
      meta,
    );
  else
    await bus.publishEvent(
      "merge.skipped",
      t.runId,
      { taskId: t.id, attempt: t.attempt, branch: t.branch, reason: "handoff status is failed" },
      meta,
    );
}

/** The two subtasks of `runId`'s parent as published on the execute queue, in id order. */
async function subtasksOf(runId: string): Promise<Task[]> {
  const subs = await Promise.all(
    ["feature-sub-1", "feature-sub-2"].map((id) => tasks.next((e) => e.runId === runId && e.data.id === id)),
  );
  return subs.map((e) => e.data);
}

async function decomposition(runId: string): Promise<DecompositionState | undefined> {
  const e = await (await bus.kv(Buckets.decompositions)).get(`${runId}.feature`);
  return e?.operation === "PUT" ? e.json<DecompositionState>() : undefined;
}

/** Waits until the subplanner has consumed and acked everything published so far. */
async function quiescent(): Promise<void> {
  await waitFor(async () => {
    for (const c of [Consumers.subplanner, Consumers.subplannerHandoffs, Consumers.subplannerMerges]) {
      const info = await bus.jsm.consumers.info(c.stream, c.name);
      if (info.num_pending > 0 || info.num_ack_pending > 0) return false;
    }
    return true;
  });
}

/** The subplanner's log line after an event that left `runId`'s decomposition waiting. */
const waitingLine = (runId: string, handoffs: number, merges: number) =>
  new RegExp(
    `"runId":"${runId}"[^\\n]*"handoffs":${handoffs},"merges":${merges}[^\\n]*"msg":"waiting for subtasks"`,
  );

const aggregatesOf = (runId: string) =>
  handoffs.items.filter((e) => e.runId === runId && e.data.taskId === "feature");

beforeAll(async () => {
  dir = await tempDir("longshot-subplanner-");
  repo = join(dir.path, "target");
  await makeRepo(repo, {
    "package.json": '{"name":"t","type":"module"}\n',
    ...Object.fromEntries(PARENT_SCOPE.map((f) => [f, `// ${f}\n`])),
  });
  const scriptPath = join(dir.path, "script.json");
  await writeFile(scriptPath, JSON.stringify(script));
  recordPath = join(dir.path, "requests.jsonl");
  sim = spawnNode(
    [
      join(ROOT, "services/sim-llm/src/main.ts"),
      "--script",
      scriptPath,
      "--port",
      "0",
      "--record",
      recordPath,
    ],
    {},
  );
  procs.push(sim);
  simUrl = (await printed(sim, /sim-llm listening on (http\S+)/))[1]!;
  nats = await startTestNats();
  bus = await connectBus({
    servers: nats.url,
    name: "subplanner-test",
    log: createLogger({ service: "test", level: "silent" }),
  });
  await bus.ensureTopology();
  tasks = new Inbox<Task>(bus, Subjects.allTasks("execute"));
  handoffs = new Inbox<Handoff>(bus, Subjects.allHandoffs);
}, 60_000);

afterAll(async () => {
  tasks?.stop();
  handoffs?.stop();
  for (const p of procs) await stopProc(p);
  await bus?.close();
  await nats?.stop();
  await dir?.cleanup();
});

describe("subplanner (real nats-server, sim-llm and subplanner processes)", () => {
  it("decomposes a 4-file task into disjoint subsets and reports one aggregate handoff after every merge", async () => {
    const sub = await startSubplanner();
    const parent = parentTask("run-a", "Build the feature across four files");
    await publishParent(parent);

    const [s1, s2] = await subtasksOf("run-a");
    expect(s1!.scope).toEqual(["src/a.ts", "src/b.ts"]);
    expect(s2!.scope).toEqual(["src/c.ts", "src/d.ts"]);
    for (const s of [s1!, s2!]) {
      expect(s.scope.every((f) => PARENT_SCOPE.includes(f))).toBe(true);
      expect(s).toMatchObject({ parentId: "feature", kind: "subtask", depth: 1, runId: "run-a", repo });
    }
    expect(s1!.scope.filter((f) => s2!.scope.includes(f))).toEqual([]);

    // Handoffs first: while a merge outcome is missing, a subtask is not terminal, so the actor keeps waiting
    // (its "waiting" line after each event is the fence) and neither asks the model again nor reports.
    await handoffFor(s1!, "complete");
    await handoffFor(s2!, "complete");
    await printed(sub, waitingLine("run-a", 2, 0));
    await mergeFor(s1!, "complete");
    await printed(sub, waitingLine("run-a", 2, 1));
    expect(aggregatesOf("run-a")).toHaveLength(0);
    expect((await decomposition("run-a"))?.round).toBe(1);
    await mergeFor(s2!, "complete");
    const agg = await handoffs.next((e) => e.runId === "run-a" && e.data.taskId === "feature");
    expect(agg.id).toBe("handoff-run-a-feature-1");
    expect(agg.data).toMatchObject({ status: "complete", branch: parent.branch, task: parent });
    expect(agg.data.head).toBeUndefined();
    expect([...agg.data.filesChanged].sort()).toEqual(PARENT_SCOPE);
    expect(agg.data.suggestions).toEqual([
      "[feature-sub-1] add more tests",
      "[feature-sub-2] add more tests",
    ]);
    expect(agg.data.metrics.tokensUsed).toBeGreaterThan(2000);

    await quiescent();
    expect((await decomposition("run-a"))?.phase).toBe("done");
    expect(aggregatesOf("run-a")).toHaveLength(1);
    expect(tasks.items.filter((e) => e.runId === "run-a").map((e) => e.data.id)).toEqual([
      "feature-sub-1",
      "feature-sub-2",
    ]);
    await stopProc(sub);
  });

  it("sends an atomic parent to the execute queue unchanged, without an aggregate", async () => {
    const sub = await startSubplanner();
    const parent = parentTask("run-atomic", "ATOMIC: one objective that cannot be split");
    await publishParent(parent);
    const out = await tasks.next((e) => e.runId === "run-atomic");
    expect(out.data).toEqual(parent);
    expect(out.id).toBe("task-run-atomic-feature-1-atomic");
    await quiescent();
    await waitFor(async () => (await decomposition("run-atomic"))?.outPublished);
    expect((await decomposition("run-atomic"))?.phase).toBe("atomic");
    expect(aggregatesOf("run-atomic")).toHaveLength(0);
    await stopProc(sub);
  });

  it("lets the model read the repository first (hostile arguments get errors), keeping the exchange out of its conversation", async () => {
    const sub = await startSubplanner();
    const parent = parentTask("run-look", "LOOK-FIRST: see whether this splits");
    await publishParent(parent);
    const out = await tasks.next((e) => e.runId === "run-look");
    expect(out.data).toEqual(parent);
    type Sent = { role: string; content?: string | null };
    const recorded = (await readFile(recordPath, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { conversation: string; request: { messages: Sent[] } })
      .filter((r) => r.conversation === "subplanner looks first");
    expect(recorded).toHaveLength(2);
    const results = recorded[1]!.request.messages.filter((m) => m.role === "tool").map((m) => m.content);
    expect(results).toEqual([
      "src/a.ts (lines 1-1 of 1):\n1\t// src/a.ts",
      "src:\na.ts (12 bytes)\nb.ts (12 bytes)\nc.ts (12 bytes)\nd.ts (12 bytes)",
      expect.stringMatching(/^error: invalid arguments for read_file: path: must not contain '\.\.'/),
      expect.stringMatching(/^error: invalid arguments for git_log: path: must not start with '-'/),
    ]);
    await quiescent();
    await waitFor(async () => (await decomposition("run-look"))?.outPublished);
    const state = (await decomposition("run-look"))!;
    expect(state.phase).toBe("atomic");
    expect(state.conversation.map((t) => t.role)).toEqual(["system", "user", "assistant"]);
    expect(sub.output()).toMatch(/"runId":"run-look"[^\n]*"toolCalls":4[^\n]*"msg":"planned"/);
    await stopProc(sub);
  });

  it("survives SIGKILL after publishing the subtasks: restarted, it still reports exactly one aggregate", async () => {
    const first = await startSubplanner();
    const parent = parentTask("run-b", "Build the feature across four files, again");
    await publishParent(parent);
    const [s1, s2] = await subtasksOf("run-b");
    await stopProc(first, "SIGKILL");
    expect(first.child.signalCode).toBe("SIGKILL");

    await startSubplanner();
    // A redelivered parent and a repeated handoff must change nothing.
    await publishParent(parent, "task-run-b-feature-1-redelivered");
    await handoffFor(s1!, "complete");
    await handoffFor(s1!, "complete", "handoff-run-b-feature-sub-1-1-again");
    await mergeFor(s1!, "complete");
    await handoffFor(s2!, "failed");
    await mergeFor(s2!, "failed");

    const agg = await handoffs.next((e) => e.runId === "run-b" && e.data.taskId === "feature");
    expect(agg.data.status).toBe("partial");
    expect(agg.data.filesChanged).toEqual(["src/a.ts", "src/b.ts"]);
    expect(agg.data.concerns).toContain("[feature-sub-2] tests failed");
    await quiescent();
    expect((await decomposition("run-b"))?.phase).toBe("done");
    expect(aggregatesOf("run-b")).toHaveLength(1);
    // A subtask republished after the restart reuses its message id, so JetStream keeps one copy.
    for (const id of ["feature-sub-1", "feature-sub-2"]) {
      const ids = new Set(
        tasks.items.filter((e) => e.runId === "run-b" && e.data.id === id).map((e) => e.id),
      );
      expect([...ids]).toEqual([`task-run-b-${id}-1`]);
    }
    expect(tasks.items.filter((e) => e.runId === "run-b" && e.data.id === "feature")).toEqual([]);
  });
});
