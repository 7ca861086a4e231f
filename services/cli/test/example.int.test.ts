/**
 * The demo target (examples/todo-api) and its sim-llm script (examples/todo-api.sim.json), checked without
 * Longshot's services: the real sim-llm process answers as the planner, the subplanner, the reconciler and
 * each worker; the test plays Pi's part (applies the `write`/`edit` calls with Pi's semantics, runs the
 * conflict-fix worker's `git rebase --continue`), commits each worker's changes on its own branch from the
 * initial main, and lands the branches with `git rebase` + `git merge --ff-only` in priority order, like the
 * merge queue. The demo's scenarios are replayed on the way: a task that fails once and completes on its
 * retry, a task whose first attempt breaks an existing test (the merge queue rejects it) and whose retry with
 * the failure as context lands green, a task the subplanner splits, a genuine conflict resolved by a
 * conflict-fix worker (in both landing orders), and the reconciler's fix task for a main that went red anyway
 * (its safety net). Real git, real node.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
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
/** Heading of the worker prompt section with a retry's context (services/worker/src/domain/prompt.ts). */
const CONTEXT_HEADING = "## Context from earlier attempts";
/** The command the conflict-fix worker runs once the conflicted files are resolved. */
const CONTINUE_REBASE = "git add -A && GIT_EDITOR=true git rebase --continue";

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
function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const options = { cwd, env: { ...childEnv, ...env }, maxBuffer: 16 * 1024 * 1024 };
    execFile(cmd, args, options, (err, stdout, stderr) => {
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

/** Whether `cwd` is in the middle of a rebase. */
async function rebaseInProgress(cwd: string): Promise<boolean> {
  for (const dir of ["rebase-merge", "rebase-apply"]) {
    const path = join(cwd, await git(cwd, "rev-parse", "--git-path", dir));
    if (
      await stat(path).then(
        () => true,
        () => false,
      )
    )
      return true;
  }
  return false;
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
  /** A retry's context (the first attempt's handoff), as the planner sets it. */
  context?: string;
}

interface Feature {
  id: string;
  description: string;
  files: string[];
  acceptance: string;
}

/**
 * The task prompt as the worker builds it: it starts with `## Task: <id>` and a newline, and carries the
 * context section when the task has one; `extra` lines stand for the branch and instruction sections.
 */
function taskPrompt(t: PlannedTask, extra: string[] = []): string {
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
    ...(t.context ? [CONTEXT_HEADING, t.context, ""] : []),
    ...extra,
  ].join("\n");
}

/** The last fenced ```json block of a text, parsed. */
function lastJsonFence(text: string): unknown {
  const blocks = [...text.matchAll(/```json\s*\n([\s\S]*?)```/g)];
  const last = blocks.at(-1)?.[1];
  if (last === undefined) throw new Error(`no fenced json block in: ${text.slice(0, 200)}`);
  return JSON.parse(last);
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

interface Handoff {
  status: string;
  summary: string;
  filesChanged: string[];
  concerns: string[];
}

interface WorkerRun {
  task: PlannedTask;
  branch: string;
  /** The branch head as the worker left it (before any rebase). */
  head: string;
  touched: string[];
  handoff: Handoff;
}

describe("examples/todo-api and its sim-llm script", () => {
  let tmp = "";
  let repo = "";
  let initial = "";
  let sim: { url: string; child: ChildProcess } | undefined;
  let conversations: ScriptConversation[] = [];
  let workerSystem = "";
  /** The root planner's tasks. */
  let planned: PlannedTask[] = [];
  /** Planned tasks the subplanner splits (scope ≥ 4 files). */
  let decomposed: PlannedTask[] = [];
  /** What runs in sandboxes: the planned tasks that are not decomposed, and the subtasks. */
  let executable: PlannedTask[] = [];
  const workers: WorkerRun[] = [];
  const retried: string[] = [];
  /** Tasks whose complete first attempt breaks the tests: the merge queue rejects it, the retry lands. */
  const rejected: string[] = [];
  const conflicts: { id: string; files: string[] }[] = [];

  /** Names of the conversations matching a worker prompt, in script order (sim-llm takes the first). */
  const workerConversations = (prompt: string) =>
    conversations
      .filter((c) => matcherMatches(c.match?.system, workerSystem) && matcherMatches(c.match?.user, prompt))
      .map((c) => c.name);

  /**
   * Plays one worker session in the current checkout of `repo`: asks sim-llm turn by turn, applies `write`
   * and `edit` calls, hands `bash` commands to `onBash` (default: only `npm test` is expected, and the
   * test runs the tests itself), and returns the files touched and the parsed handoff.
   */
  async function playWorker(
    label: string,
    prompt: string,
    onBash: (command: string) => Promise<string> = async (command) => {
      expect(command, `${label} runs an unexpected command`).toBe("npm test");
      return "ok";
    },
  ): Promise<{ touched: string[]; handoff: Handoff }> {
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
      // One turn's calls may run in parallel in Pi: they must touch different files, and a bash call
      // (which may read any file) runs alone.
      const paths = calls.flatMap((c) => {
        const a = JSON.parse(c.function.arguments) as { path?: string };
        return a.path === undefined ? [] : [a.path];
      });
      expect(new Set(paths).size, `${label} turn ${turn} touches a file twice`).toBe(paths.length);
      if (calls.some((c) => c.function.name === "bash"))
        expect(calls, `${label} turn ${turn}`).toHaveLength(1);
      for (const call of calls) {
        const args = JSON.parse(call.function.arguments) as Record<string, unknown>;
        let result = "ok";
        if (call.function.name === "write") {
          await applyWrite(repo, args as { path: string; content: string });
          touched.add(args.path as string);
        } else if (call.function.name === "edit") {
          await applyEdit(repo, args as { path: string; edits: { oldText: string; newText: string }[] });
          touched.add(args.path as string);
        } else {
          expect(call.function.name).toBe("bash");
          result = await onBash(args.command as string);
        }
        messages.push({ role: "tool", tool_call_id: call.id, content: result });
      }
    }
    expect(final, `${label}: no final text`).not.toBe("");
    const handoff = lastJsonFence(final) as Handoff;
    expect([...handoff.filesChanged].sort(), `${label}: filesChanged`).toEqual([...touched].sort());
    return { touched: [...touched], handoff };
  }

  /** Commits everything on the current branch; returns the new head. */
  async function commitAll(message: string): Promise<string> {
    await git(repo, "add", "-A");
    await git(repo, "commit", "-q", "-m", message);
    return git(repo, "rev-parse", "HEAD");
  }

  /**
   * Plays the conflict-fix worker of task `id` in `repo`, which is mid-rebase with conflicts in `files`:
   * it must resolve them and finish the rebase itself, touching only the conflicted files.
   */
  async function resolveConflict(id: string, files: string[]): Promise<void> {
    const cfTask: PlannedTask = {
      id: `${id}-cf`,
      description: `Resolve the merge conflict of branch worker/${id} with main. The branch is being rebased onto main in your sandbox and stopped with conflicts in: ${files.join(", ")}. Keep the intent of both sides.`,
      scope: files,
      acceptance: "No conflict markers remain; the rebase is complete; the project's tests pass.",
      priority: 1,
    };
    const prompt = taskPrompt(cfTask, [
      "### Branch",
      `You are on branch \`worker/${id}-cf\`, a copy of \`worker/${id}\` in the middle of a rebase onto \`origin/main\`.`,
    ]);
    expect(workerConversations(prompt)).toEqual([`worker ${id}-cf`]);
    let continued = false;
    const { touched, handoff } = await playWorker(cfTask.id, prompt, async (command) => {
      if (command === "npm test") return "ok";
      expect(command).toBe(CONTINUE_REBASE);
      const r = await run("sh", ["-c", command], repo);
      expect(r.code, `${command}:\n${r.stdout}${r.stderr}`).toBe(0);
      continued = true;
      return r.stdout;
    });
    expect(continued, `${id}-cf never continued the rebase`).toBe(true);
    expect(await rebaseInProgress(repo), `${id}-cf left the rebase unfinished`).toBe(false);
    expect(handoff.status).toBe("complete");
    for (const f of touched) expect(files, `${id}-cf changed ${f}, which was not in conflict`).toContain(f);
    expect((await run("git", ["grep", "-nE", "^(<<<<<<<|=======|>>>>>>>)( |$)"], repo)).code).toBe(1);
  }

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "longshot-example-"));
    repo = join(tmp, "todo-api");
    await cp(templateDir, repo, { recursive: true });
    await git(repo, "init", "-q", "-b", "main");
    await git(repo, "add", "-A");
    await git(repo, "commit", "-q", "-m", "todo-api skeleton");
    initial = await git(repo, "rev-parse", "HEAD");
    conversations = (
      JSON.parse(await readFile(scriptPath, "utf8")) as { conversations: ScriptConversation[] }
    ).conversations;
    workerSystem = await readFile(join(root, "prompts/worker.md"), "utf8");
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
    planned = plan.tasks;
    expect(planned.length).toBeGreaterThanOrEqual(8);
    expect(new Set(planned.map((t) => t.id)).size).toBe(planned.length);
    for (const t of planned) {
      expect(t.id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(t.scope.length, `${t.id} scope`).toBeGreaterThanOrEqual(1);
      expect(Number.isInteger(t.priority) && t.priority >= 1 && t.priority <= 10, `${t.id} priority`).toBe(
        true,
      );
      expect(t.description.length).toBeGreaterThan(0);
      expect(t.acceptance.length).toBeGreaterThan(0);
    }
    // A task of 4+ files goes to the subplanner (libs/contracts routing), so it needs its own subplanner
    // conversation; every other task is one worker's.
    decomposed = planned.filter((t) => t.scope.length >= 4);
    expect(decomposed.length, "tasks big enough for the subplanner").toBeGreaterThanOrEqual(1);
    for (const t of planned) {
      const own = conversations.some((c) => c.match?.user === `# Parent task: ${t.id}\n`);
      expect(own, `${t.id}: a subplanner conversation iff it has 4+ files`).toBe(t.scope.length >= 4);
    }

    // Feature → task by id; the task's scope holds every file of the feature.
    const features = JSON.parse(await readFile(join(templateDir, "FEATURES.json"), "utf8")) as Feature[];
    expect(features.length).toBeGreaterThanOrEqual(8);
    for (const f of features) {
      const task = planned.find((t) => t.id === f.id);
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

  it("the subplanner splits each big task into disjoint subtasks covering its scope, then plans nothing more", async () => {
    const system = await readFile(join(root, "prompts/subplanner.md"), "utf8");
    expect(system.startsWith("You are a subplanner of Longshot, ")).toBe(true);
    executable = planned.filter((t) => t.scope.length <= 3);
    for (const parent of decomposed) {
      const user = [
        `# Parent task: ${parent.id}`,
        "",
        `- priority: ${parent.priority}`,
        "- depth: 0",
        `- scope (${parent.scope.length} files):`,
        ...parent.scope.map((f) => `  - ${f}`),
        "",
        "## Description",
        "",
        parent.description,
      ].join("\n");
      const first = await complete(sim!.url, [
        { role: "system", content: system },
        { role: "user", content: user },
      ]);
      const answer = JSON.parse(first.message.content ?? "") as {
        scratchpad: string;
        tasks: (Omit<PlannedTask, "priority"> & { priority?: number })[];
      };
      expect(typeof answer.scratchpad).toBe("string");
      expect(answer.tasks.length).toBeGreaterThanOrEqual(2);
      expect(answer.tasks.length).toBeLessThanOrEqual(10);
      const claimed = new Set<string>();
      for (const [i, sub] of answer.tasks.entries()) {
        expect(sub.description.length).toBeGreaterThan(0);
        expect(sub.scope.length).toBeGreaterThanOrEqual(1);
        for (const f of sub.scope) {
          expect(parent.scope, `subtask ${i + 1} of ${parent.id}`).toContain(f);
          expect(claimed.has(f), `${f} is in two subtasks of ${parent.id}`).toBe(false);
          claimed.add(f);
        }
        // The subplanner names subtasks `<parent>-sub-<n>` and ignores model ids.
        executable.push({
          id: `${parent.id}-sub-${i + 1}`,
          description: sub.description,
          scope: sub.scope,
          acceptance: sub.acceptance ?? "",
          priority: sub.priority ?? parent.priority,
        });
      }
      expect([...claimed].sort(), `the subtasks of ${parent.id} cover its scope`).toEqual(
        [...parent.scope].sort(),
      );
      const followUp = await complete(sim!.url, [
        { role: "system", content: system },
        { role: "user", content: user },
        { role: "assistant", content: first.message.content },
        { role: "user", content: `# Update on ${parent.id} (round 1 of at most 5 finished)` },
      ]);
      expect((JSON.parse(followUp.message.content ?? "") as { tasks: unknown[] }).tasks).toEqual([]);
    }
  });

  it("each task has one worker conversation whose calls apply cleanly; one fails, one is rejected by the merge queue, both complete on their retry", async () => {
    expect(executable.length).toBeGreaterThan(planned.length - decomposed.length);
    for (const task of executable) {
      const prompt = taskPrompt(task);
      expect(workerConversations(prompt), `conversations matching task ${task.id}`).toHaveLength(1);

      const branch = `worker/${task.id}`;
      await git(repo, "checkout", "-q", "-b", branch, initial);
      let played = await playWorker(task.id, prompt);
      const hasRetry =
        workerConversations(taskPrompt({ ...task, context: "x" }))[0] === `worker ${task.id} (attempt 2)`;
      if (hasRetry && played.handoff.status === "complete") {
        // The merge queue runs the whole suite on the candidate (initial main + this branch): it fails on a
        // test the worker did not run, so the candidate is rejected and the planner retries with the failure.
        await commitAll(`${task.id} attempt 1`);
        const verify = await run(node, ["--test", "--test-isolation=none"], repo);
        expect(verify.code, `${task.id} attempt 1 should break the suite:\n${verify.stdout}`).not.toBe(0);
        expect(verify.stdout).toMatch(/fail 1\b/);
        await git(repo, "checkout", "-q", "-f", initial);
        await git(repo, "branch", "-q", "-D", branch);
        await git(repo, "checkout", "-q", "-b", branch, initial);
        // As the planner builds it from merge.rejected: the failing check and its output's tail.
        const failing = verify.stdout.split("\n").filter((l) => /✖|AssertionError|Input:/.test(l));
        const context = `The merge queue rejected attempt 1 (branch ${branch}): check test failed on the base with this branch applied (\`npm run test\`, exit 1): ${failing.slice(0, 12).join("\n")}\nThe change must pass the project's checks on main as it is now: fix that failure while doing the task.`;
        const retryPrompt = taskPrompt({ ...task, context });
        expect(workerConversations(retryPrompt)[0], `${task.id}: the retry's conversation`).toBe(
          `worker ${task.id} (attempt 2)`,
        );
        played = await playWorker(`${task.id} attempt 2`, retryPrompt);
        const green = await run(node, ["--test", "--test-isolation=none"], repo);
        expect(green.code, `${task.id} attempt 2 should pass the whole suite:\n${green.stdout}`).toBe(0);
        rejected.push(task.id);
        retried.push(task.id);
      }
      if (played.handoff.status === "failed" || played.handoff.status === "blocked") {
        // The first attempt is kept as the planner would report it; its tests really fail.
        const own = played.touched.filter((f) => /^test\/.*\.test\.ts$/.test(f));
        expect(own.length, `${task.id} attempt 1 adds no test`).toBeGreaterThan(0);
        const r = await run(node, ["--test", ...own], repo);
        expect(r.code, `${task.id} attempt 1 should fail its tests:\n${r.stdout}`).not.toBe(0);
        await git(repo, "checkout", "-q", "-f", initial);
        await git(repo, "clean", "-q", "-fd");
        await git(repo, "branch", "-q", "-D", branch);
        await git(repo, "checkout", "-q", "-b", branch, initial);
        // The retry (attempt 2) carries the first handoff as context, as the planner builds it.
        const h = played.handoff;
        const context = [
          `Attempt 1 ended ${h.status}: ${h.summary}`,
          ...(h.concerns.length ? [`Its concerns: ${h.concerns.join(" | ")}`] : []),
          "Take a different approach where the first one failed.",
        ].join("\n");
        const retryPrompt = taskPrompt({ ...task, context });
        expect(workerConversations(retryPrompt)[0], `${task.id}: the retry's conversation`).toBe(
          `worker ${task.id} (attempt 2)`,
        );
        played = await playWorker(`${task.id} attempt 2`, retryPrompt);
        retried.push(task.id);
      }
      const { touched, handoff } = played;
      expect(handoff.status, task.id).toBe("complete");
      for (const f of touched) {
        // A worker may stray out of scope only when it says so in a concern (that is the conflict's cause).
        if (!task.scope.includes(f)) {
          expect(
            handoff.concerns.some((c) => c.includes(f)),
            `${task.id} changed ${f} outside its scope without a concern`,
          ).toBe(true);
        }
      }
      const head = await commitAll(`${task.id}: ${task.description.slice(0, 50)}`);
      expect(await changedFiles(repo, initial, branch)).toEqual([...touched].sort());
      workers.push({ task, branch, head, touched, handoff });
    }
    expect(retried, "tasks that complete only on their retry").toHaveLength(2);
    expect(rejected, "tasks the merge queue rejects once").toEqual(["email-validation"]);
    expect(workers.filter((w) => w.touched.includes(SHARED_FILE)).length).toBeGreaterThanOrEqual(3);
    await git(repo, "checkout", "-q", "main");
  });

  it("each worker's branch passes its own tests (initial main + its changes)", async () => {
    expect(workers).toHaveLength(executable.length);
    for (const w of workers) {
      await git(repo, "checkout", "-q", w.branch);
      // The branch's own tests plus the skeleton's app tests, in one process to stay fast; the final main runs
      // the plain `node --test`.
      const own = w.touched.filter((f) => /^test\/.*\.test\.ts$/.test(f));
      if (own.length === 0) {
        for (const f of w.touched)
          expect(f, `${w.task.id} adds no test but changes code`).toMatch(/\.(md|json)$/);
      }
      const r = await nodeTest(repo, "--test-isolation=none", "test/app.test.ts", ...own);
      expect(r.code, `${w.task.id} on its own branch:\n${r.stdout}${r.stderr}`).toBe(0);
    }
    await git(repo, "checkout", "-q", "main");
  });

  it("the branches land by rebase in priority order; the one genuine conflict is resolved by its conflict-fix worker", async () => {
    expect(workers).toHaveLength(executable.length);
    const order = [...workers].sort((a, b) => a.task.priority - b.task.priority);
    const rebasedShared: string[] = [];
    for (const w of order) {
      const main = await git(repo, "rev-parse", "main");
      const basedOnMain =
        (await run("git", ["merge-base", "--is-ancestor", main, w.branch], repo)).code === 0;
      const mainTouchedShared = (await changedFiles(repo, initial, main)).includes(SHARED_FILE);
      const rebase = await run("git", ["rebase", "-q", "main", w.branch], repo);
      if (rebase.code !== 0) {
        const files = (await git(repo, "diff", "--name-only", "--diff-filter=U")).split("\n").filter(Boolean);
        expect(
          files.length,
          `${w.task.id} fails to rebase without a conflict:\n${rebase.stderr}`,
        ).toBeGreaterThan(0);
        conflicts.push({ id: w.task.id, files });
        await resolveConflict(w.task.id, files);
      }
      await git(repo, "checkout", "-q", "main");
      await git(repo, "merge", "-q", "--ff-only", w.branch);
      if (!basedOnMain && mainTouchedShared && w.touched.includes(SHARED_FILE)) rebasedShared.push(w.task.id);
    }
    expect(rebasedShared.length, "no branch needed a rebase of the shared file").toBeGreaterThanOrEqual(1);
    // Exactly one genuine conflict: two tasks with disjoint declared scopes that change the same lines.
    expect(conflicts).toHaveLength(1);
    const [conflict] = conflicts;
    const sides = workers.filter((w) => conflict!.files.every((f) => w.touched.includes(f)));
    expect(sides.map((w) => w.task.id)).toContain(conflict!.id);
    expect(sides).toHaveLength(2);
    for (const f of conflict!.files) {
      expect(
        sides.filter((w) => w.task.scope.includes(f)),
        `${f} is in one declared scope only`,
      ).toHaveLength(1);
    }
    expect(await git(repo, "rev-list", "--count", "main")).toBe(String(workers.length + 1));
    expect((await run("git", ["grep", "-nE", "^(<<<<<<<|>>>>>>>)"], repo)).code).toBe(1);
  });

  it("the resolved entry point keeps both intents: validated configuration and graceful shutdown", async () => {
    expect(conflicts).toHaveLength(1);
    // server-config: a bad PORT stops the server at start-up, naming the variable.
    const bad = await run(node, ["src/server.ts"], repo, { PORT: "http" });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/PORT must be an integer/);
    // graceful-shutdown: SIGINT (which the skeleton did not handle) closes the server and exits 0.
    const server = spawn(node, ["src/server.ts"], {
      cwd: repo,
      env: { ...childEnv, PORT: "0", HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      server.once("exit", (code, signal) => resolve({ code, signal })),
    );
    try {
      await new Promise<void>((resolve, reject) => {
        createInterface({ input: server.stdout! }).on("line", (line) => {
          if (/listening on http:\/\/127\.0\.0\.1:\d+/.test(line)) resolve();
        });
        server.once("exit", (code) => reject(new Error(`server exited with ${code} before listening`)));
      });
      server.kill("SIGINT");
      expect(await exited).toEqual({ code: 0, signal: null });
    } finally {
      if (server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
    }
  });

  it("the conflict resolution holds in the other landing order too", async () => {
    const [conflict] = conflicts;
    expect(conflict).toBeDefined();
    const loser = workers.find((w) => w.task.id === conflict!.id)!;
    const winner = workers.find((w) => w !== loser && conflict!.files.every((f) => w.touched.includes(f)))!;
    // Land the loser first (its original branch, before any rebase), then rebase the winner onto it.
    await git(repo, "checkout", "-q", "-b", "other-order", loser.head);
    await git(repo, "checkout", "-q", "-b", "other-order-winner", winner.head);
    const rebase = await run("git", ["rebase", "-q", "other-order"], repo);
    expect(rebase.code, "the other order conflicts too").not.toBe(0);
    const files = (await git(repo, "diff", "--name-only", "--diff-filter=U")).split("\n").filter(Boolean);
    expect(files).toEqual(conflict!.files);
    await resolveConflict(winner.task.id, files);
    // Both orders end with the same resolved files, and the pair's tests pass on it.
    for (const f of files) {
      expect(await git(repo, "show", `HEAD:${f}`), f).toBe(await git(repo, "show", `main:${f}`));
    }
    const tests = [...loser.touched, ...winner.touched].filter((f) => /^test\/.*\.test\.ts$/.test(f));
    const r = await nodeTest(repo, "--test-isolation=none", "test/app.test.ts", ...tests);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    await git(repo, "checkout", "-q", "main");
  });

  it("main is green after the merges: the breaking first attempt never landed", async () => {
    const green = await nodeTest(repo);
    expect(green.code, green.stdout + green.stderr).toBe(0);
    expect(green.stdout).toMatch(/fail 0/);
  });

  it("the safety net: if main went red on the stale assertion anyway, the reconciler's fix task makes it green", async () => {
    // Main as it would be had the first attempt of email-validation landed: the skeleton's platform test.
    await git(repo, "checkout", "-q", "-b", "red-main", "main");
    await writeFile(
      join(repo, "test/platform.test.ts"),
      await readFile(join(templateDir, "test/platform.test.ts")),
    );
    const sha = await commitAll("main with the stale assertion");
    const red = await nodeTest(repo, "--test-isolation=none");
    expect(red.code, "main should be red before the fix").not.toBe(0);
    expect(red.stdout).toMatch(/fail 1\b/);

    const system = await readFile(join(root, "prompts/reconciler.md"), "utf8");
    expect(system.startsWith("You are the reconciler of Longshot, ")).toBe(true);
    const user = [
      `The base branch \`main\` at ${sha.slice(0, 12)} is red.`,
      "",
      "## test failed (exit 1)",
      "",
      "$ npm run test",
      "",
      red.stdout.slice(-8000),
      "",
      'Reply with a bare JSON array of at most 5 fix tasks: [{"description","scope","acceptance"}]; scope ≤ 3 files; cite the exact error.',
    ].join("\n");
    const answer = await complete(sim!.url, [
      { role: "system", content: system },
      { role: "user", content: user },
    ]);
    const text = answer.message.content ?? "";
    const fixes = (/```json\s*\n/.test(text) ? lastJsonFence(text) : JSON.parse(text)) as PlannedTask[];
    expect(Array.isArray(fixes)).toBe(true);
    expect(fixes.length).toBeGreaterThanOrEqual(1);
    expect(fixes.length).toBeLessThanOrEqual(5);
    for (const f of fixes) {
      expect(f.description.length).toBeGreaterThan(0);
      expect(f.scope.length).toBeGreaterThanOrEqual(1);
      expect(f.scope.length).toBeLessThanOrEqual(3);
    }

    // The planner files them as fix-001, fix-002, … at priority 1.
    const fixTasks = fixes.map((f, i) => ({
      ...f,
      id: `fix-${String(i + 1).padStart(3, "0")}`,
      priority: 1,
      description: `${f.description}\n\nFailing check on main at ${sha.slice(0, 8)}: test failing`,
    }));
    for (const fix of fixTasks) {
      const prompt = taskPrompt(fix);
      expect(workerConversations(prompt), fix.id).toEqual(["worker fix"]);
      const { touched, handoff } = await playWorker(fix.id, prompt);
      expect(handoff.status).toBe("complete");
      for (const f of touched) expect(fix.scope, `${fix.id} changed ${f} outside its scope`).toContain(f);
    }
    await commitAll("fixes");
    const green = await nodeTest(repo);
    expect(green.code, green.stdout + green.stderr).toBe(0);
    expect(green.stdout).toMatch(/fail 0/);

    // A repeat (a later red sweep filed the same fix again) finds nothing left to change.
    const repeat = { ...fixTasks[0]!, id: "fix-002" };
    await playWorker(repeat.id, taskPrompt(repeat));
    expect(await git(repo, "status", "--porcelain")).toBe("");
    await git(repo, "checkout", "-q", "main");
  });
});
