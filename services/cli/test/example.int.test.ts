/**
 * The demo target (examples/todo-api) and its sim-llm script (examples/todo-api.sim.json), checked without
 * Longshot's services: the real sim-llm process answers as the planner and as each worker, the test plays
 * Pi's part (applies the `write`/`edit` calls with Pi's semantics), commits each worker's changes on its own
 * branch from the initial main, and lands the branches with `git rebase` + `git merge --ff-only` in
 * priority order, like the merge queue. Real git, real node.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const templateDir = join(root, "examples/todo-api");
const scriptPath = join(root, "examples/todo-api.sim.json");
const node = process.execPath;
const SHARED_FILE = "src/app.ts";

/**
 * Environment for child processes: a fixed git identity and no user or system git config. NODE_OPTIONS and
 * NODE_TEST_CONTEXT are removed: a `node --test` that inherits NODE_TEST_CONTEXT (even empty) believes it is
 * a child of another test runner and reports nothing on stdout.
 */
const childEnv: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: "Longshot Test",
  GIT_AUTHOR_EMAIL: "test@longshot.invalid",
  GIT_COMMITTER_NAME: "Longshot Test",
  GIT_COMMITTER_EMAIL: "test@longshot.invalid",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_CONFIG_NOSYSTEM: "1",
};
delete childEnv.NODE_OPTIONS;
delete childEnv.NODE_TEST_CONTEXT;

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; never throws on a non-zero exit (the caller asserts). */
function run(cmd: string, args: string[], cwd: string): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: childEnv, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: err && !stderr ? String(err) : stderr });
    });
  });
}

/** Runs git in `cwd`; throws with git's output on failure. */
async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await run("git", args, cwd);
  if (r.code !== 0) throw new Error(`git ${args.join(" ")} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/** `node --test` in `cwd`: exit code and the report; fails unless the report shows passing tests. */
async function nodeTest(cwd: string, ...flags: string[]): Promise<RunResult> {
  const r = await run(node, ["--test", ...flags], cwd);
  expect(r.stdout, `node --test reported no passing test:\n${r.stdout}${r.stderr}`).toMatch(/pass [1-9]/);
  return r;
}

/** Repo-relative files changed between two refs. */
async function changedFiles(cwd: string, from: string, to: string): Promise<string[]> {
  const out = await git(cwd, "diff", "--name-only", from, to);
  return out === "" ? [] : out.split("\n");
}

// --- the script, as sim-llm reads it (only what this test needs) ---

interface ScriptConversation {
  name: string;
  match?: { system?: string; user?: string };
}

/** sim-llm matcher semantics: `/source/flags` is a regex (g and y ignored), anything else a substring. */
function matcherMatches(matcher: string | undefined, text: string): boolean {
  if (matcher === undefined) return true;
  const re = /^\/(.*)\/([a-z]*)$/s.exec(matcher);
  if (re) return new RegExp(re[1] ?? "", (re[2] ?? "").replace(/[gy]/g, "")).test(text);
  return text.includes(matcher);
}

interface PlannedTask {
  id: string;
  description: string;
  scope: string[];
  acceptance: string;
  priority: number;
}

interface Feature {
  id: string;
  description: string;
  files: string[];
  acceptance: string;
}

/** The task prompt as the worker builds it: it starts with `## Task: <id>` and a newline. */
function taskPrompt(t: PlannedTask): string {
  return [
    `## Task: ${t.id}`,
    "",
    "### Description",
    t.description,
    "",
    "### Scope (files you may create or modify)",
    ...t.scope.map((f) => `- ${f}`),
    "",
    "### Acceptance",
    t.acceptance,
    "",
  ].join("\n");
}

// --- sim-llm over HTTP ---

interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

interface Completion {
  choices: { message: { content: string | null; tool_calls?: ToolCall[] }; finish_reason: string }[];
}

type Message =
  | { role: "system" | "user"; content: string }
  | { role: "assistant"; content: string | null; tool_calls?: ToolCall[] }
  | { role: "tool"; tool_call_id: string; content: string };

/** Starts the sim-llm CLI on a free port with the demo script; resolves once it prints its URL. */
async function startSimLlm(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(
    node,
    [join(root, "services/sim-llm/src/main.ts"), "--script", scriptPath, "--port", "0"],
    {
      env: childEnv,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const m = /^sim-llm listening on (\S+)$/.exec(line);
      if (m?.[1]) resolve(m[1]);
    });
    child.once("exit", (code) => reject(new Error(`sim-llm exited with ${code}: ${stderr}`)));
  });
  return { url, child };
}

async function complete(baseUrl: string, messages: Message[]): Promise<Completion["choices"][number]> {
  const res = await fetch(`${baseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer test" },
    body: JSON.stringify({ model: "sim-1", messages }),
  });
  const body = (await res.json()) as Completion & { error?: { message: string } };
  if (!res.ok) throw new Error(`sim-llm ${res.status}: ${body.error?.message ?? JSON.stringify(body)}`);
  const choice = body.choices[0];
  if (!choice) throw new Error("sim-llm returned no choice");
  return choice;
}

// --- Pi's file tools ---

/**
 * Pi's `edit`: every `oldText` must be non-empty and occur exactly once in the file as it is before this
 * call, and the edits must not overlap; then all of them are applied.
 */
async function applyEdit(dir: string, args: { path: string; edits: { oldText: string; newText: string }[] }) {
  const file = join(dir, args.path);
  const original = await readFile(file, "utf8");
  expect(args.edits.length, `edit of ${args.path} has no edits`).toBeGreaterThan(0);
  const spans = args.edits.map((e) => {
    expect(e.oldText.length, `empty oldText in ${args.path}`).toBeGreaterThan(0);
    const at = original.indexOf(e.oldText);
    expect(
      at,
      `oldText not found in ${args.path}: ${JSON.stringify(e.oldText.slice(0, 80))}`,
    ).toBeGreaterThanOrEqual(0);
    expect(original.indexOf(e.oldText, at + 1), `oldText occurs more than once in ${args.path}`).toBe(-1);
    return { start: at, end: at + e.oldText.length, newText: e.newText };
  });
  spans.sort((a, b) => a.start - b.start);
  for (let i = 1; i < spans.length; i++) {
    expect(spans[i]!.start, `overlapping edits in ${args.path}`).toBeGreaterThanOrEqual(spans[i - 1]!.end);
  }
  let text = original;
  for (const s of [...spans].reverse()) text = text.slice(0, s.start) + s.newText + text.slice(s.end);
  await writeFile(file, text);
}

async function applyWrite(dir: string, args: { path: string; content: string }) {
  const file = join(dir, args.path);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, args.content);
}

/** The last fenced ```json block of a text, parsed. */
function lastJsonFence(text: string): unknown {
  const blocks = [...text.matchAll(/```json\s*\n([\s\S]*?)```/g)];
  const last = blocks.at(-1)?.[1];
  if (last === undefined) throw new Error(`no fenced json block in: ${text.slice(0, 200)}`);
  return JSON.parse(last);
}

interface WorkerRun {
  task: PlannedTask;
  branch: string;
  touched: string[];
  handoff: { status: string; filesChanged: string[] };
}

describe("examples/todo-api and its sim-llm script", () => {
  let tmp = "";
  let repo = "";
  let initial = "";
  let sim: { url: string; child: ChildProcess } | undefined;
  let tasks: PlannedTask[] = [];
  const workers: WorkerRun[] = [];

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "longshot-example-"));
    repo = join(tmp, "todo-api");
    await cp(templateDir, repo, { recursive: true });
    await git(repo, "init", "-q", "-b", "main");
    await git(repo, "add", "-A");
    await git(repo, "commit", "-q", "-m", "todo-api skeleton");
    initial = await git(repo, "rev-parse", "HEAD");
    sim = await startSimLlm();
  });

  afterAll(async () => {
    if (sim && sim.child.exitCode === null) {
      const exited = new Promise((resolve) => sim?.child.once("exit", resolve));
      sim.child.kill("SIGTERM");
      await exited;
    }
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("the committed script is up to date with examples/todo-api.features", async () => {
    const r = await run(node, [join(root, "examples/build-todo-api-script.ts"), "--check"], root);
    expect(r.code, r.stderr + r.stdout).toBe(0);
  });

  it("the initial skeleton passes node --test", async () => {
    const r = await nodeTest(repo);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it("the planner plans every feature of FEATURES.json, then nothing more", async () => {
    const system = await readFile(join(root, "prompts/root-planner.md"), "utf8");
    expect(system.startsWith("You are the root planner of Longshot, ")).toBe(true);
    const user = "# Request\n\nBuild the REST API described in SPEC.md and FEATURES.json.";
    const first = await complete(sim!.url, [
      { role: "system", content: system },
      { role: "user", content: user },
    ]);
    expect(first.finish_reason).toBe("stop");
    const plan = JSON.parse(first.message.content ?? "") as { scratchpad: string; tasks: PlannedTask[] };
    expect(typeof plan.scratchpad).toBe("string");
    tasks = plan.tasks;
    expect(tasks.length).toBeGreaterThanOrEqual(8);
    expect(new Set(tasks.map((t) => t.id)).size).toBe(tasks.length);
    for (const t of tasks) {
      expect(t.id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(t.scope.length, `${t.id} scope`).toBeGreaterThanOrEqual(1);
      expect(t.scope.length, `${t.id} scope`).toBeLessThanOrEqual(3);
      expect(Number.isInteger(t.priority) && t.priority >= 1 && t.priority <= 10, `${t.id} priority`).toBe(
        true,
      );
      expect(t.description.length).toBeGreaterThan(0);
      expect(t.acceptance.length).toBeGreaterThan(0);
    }

    // Feature → task by id; the task's scope holds every file of the feature.
    const features = JSON.parse(await readFile(join(templateDir, "FEATURES.json"), "utf8")) as Feature[];
    expect(features.length).toBeGreaterThanOrEqual(8);
    for (const f of features) {
      const task = tasks.find((t) => t.id === f.id);
      expect(task, `no task covers feature ${f.id}`).toBeDefined();
      expect(task?.scope).toEqual(expect.arrayContaining(f.files));
    }

    const followUp = await complete(sim!.url, [
      { role: "system", content: system },
      { role: "user", content: user },
      { role: "assistant", content: first.message.content },
      { role: "user", content: "# Update (iteration 2)\n\n## New handoffs\n\nnone" },
    ]);
    expect((JSON.parse(followUp.message.content ?? "") as { tasks: unknown[] }).tasks).toEqual([]);
  });

  it("each task has exactly one worker conversation, whose calls apply cleanly and stay in scope", async () => {
    expect(tasks.length).toBeGreaterThan(0);
    const script = JSON.parse(await readFile(scriptPath, "utf8")) as { conversations: ScriptConversation[] };
    const workerSystem = await readFile(join(root, "prompts/worker.md"), "utf8");
    for (const task of tasks) {
      const prompt = taskPrompt(task);
      const matching = script.conversations.filter(
        (c) => matcherMatches(c.match?.system, workerSystem) && matcherMatches(c.match?.user, prompt),
      );
      expect(
        matching.map((c) => c.name),
        `conversations matching task ${task.id}`,
      ).toHaveLength(1);

      const branch = `worker/${task.id}`;
      await git(repo, "checkout", "-q", "-b", branch, initial);
      const messages: Message[] = [
        { role: "system", content: workerSystem },
        { role: "user", content: prompt },
      ];
      const touched = new Set<string>();
      let final = "";
      for (let turn = 0; turn < 10 && final === ""; turn++) {
        const choice = await complete(sim!.url, messages);
        const calls = choice.message.tool_calls ?? [];
        messages.push({ role: "assistant", content: choice.message.content, tool_calls: calls });
        if (calls.length === 0) {
          final = choice.message.content ?? "";
          break;
        }
        // One turn's calls may run in parallel in Pi: they must touch different files.
        const paths = calls.flatMap((c) => {
          const a = JSON.parse(c.function.arguments) as { path?: string };
          return a.path === undefined ? [] : [a.path];
        });
        expect(new Set(paths).size, `${task.id} turn ${turn} touches a file twice`).toBe(paths.length);
        for (const call of calls) {
          const args = JSON.parse(call.function.arguments) as Record<string, unknown>;
          if (call.function.name === "write") {
            await applyWrite(repo, args as { path: string; content: string });
            touched.add(args.path as string);
          } else if (call.function.name === "edit") {
            await applyEdit(repo, args as { path: string; edits: { oldText: string; newText: string }[] });
            touched.add(args.path as string);
          } else {
            expect(call.function.name).toBe("bash");
            expect(args.command).toBe("node --test");
          }
          messages.push({ role: "tool", tool_call_id: call.id, content: "ok" });
        }
      }
      expect(final, `${task.id}: no final text`).not.toBe("");
      const handoff = lastJsonFence(final) as WorkerRun["handoff"];
      expect(handoff.status).toBe("complete");
      expect([...handoff.filesChanged].sort()).toEqual([...touched].sort());
      for (const f of touched) expect(task.scope, `${task.id} changed ${f} outside its scope`).toContain(f);

      await git(repo, "add", "-A");
      await git(repo, "commit", "-q", "-m", `${task.id}: ${task.description.slice(0, 50)}`);
      expect(await changedFiles(repo, initial, branch)).toEqual([...touched].sort());
      workers.push({ task, branch, touched: [...touched], handoff });
    }
    expect(workers.filter((w) => w.touched.includes(SHARED_FILE)).length).toBeGreaterThanOrEqual(3);
    await git(repo, "checkout", "-q", "main");
  });

  it("each worker's branch passes its tests on its own (initial main + its changes)", async () => {
    expect(workers).toHaveLength(tasks.length);
    for (const w of workers) {
      await git(repo, "checkout", "-q", w.branch);
      // The branch's own tests plus the skeleton's app tests (the only skeleton tests a branch can affect: it
      // may change src/app.ts or src/server.ts, never the platform modules), in one process to stay fast.
      // The final main runs the plain `node --test`.
      const own = w.touched.filter((f) => /^test\/.*\.test\.ts$/.test(f));
      expect(own.length, `${w.task.id} adds no test file`).toBeGreaterThan(0);
      const r = await nodeTest(repo, "--test-isolation=none", "test/app.test.ts", ...own);
      expect(r.code, `${w.task.id} on its own branch:\n${r.stdout}${r.stderr}`).toBe(0);
    }
    await git(repo, "checkout", "-q", "main");
  });

  it("the branches land on main by rebase in priority order, and main passes node --test", async () => {
    expect(workers).toHaveLength(tasks.length);
    const order = [...workers].sort((a, b) => a.task.priority - b.task.priority);
    const rebasedShared: string[] = [];
    for (const w of order) {
      const main = await git(repo, "rev-parse", "main");
      const basedOnMain =
        (await run("git", ["merge-base", "--is-ancestor", main, w.branch], repo)).code === 0;
      const mainTouchedShared = (await changedFiles(repo, initial, main)).includes(SHARED_FILE);
      const rebase = await run("git", ["rebase", "-q", "main", w.branch], repo);
      if (rebase.code !== 0) await run("git", ["rebase", "--abort"], repo);
      expect(rebase.code, `${w.task.id} does not rebase cleanly:\n${rebase.stdout}${rebase.stderr}`).toBe(0);
      await git(repo, "checkout", "-q", "main");
      await git(repo, "merge", "-q", "--ff-only", w.branch);
      if (!basedOnMain && mainTouchedShared && w.touched.includes(SHARED_FILE)) rebasedShared.push(w.task.id);
    }
    expect(rebasedShared.length, "no branch needed a rebase of the shared file").toBeGreaterThanOrEqual(1);
    expect(await git(repo, "rev-list", "--count", "main")).toBe(String(workers.length + 1));
    expect((await run("git", ["grep", "-nE", "^(<<<<<<<|>>>>>>>)"], repo)).code).toBe(1);
    const r = await nodeTest(repo);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/fail 0/);
  });
});
