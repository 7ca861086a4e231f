import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Task, type TaskInput, type WorkerLine } from "@longshot/contracts";
import { branchExists, createMirrors, headSha, isAncestor } from "@longshot/git";
import { createLogger } from "@longshot/log";
import {
  createLocalBackend,
  createSandboxProvider,
  type SandboxProvider,
  type SandboxRunOptions,
} from "@longshot/sandbox";
import { type SimLlmProcess, startSimLlm, waitFor } from "@longshot/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Conflict-fix tasks end to end: real git origin, the local (bubblewrap) provider, the real worker, Pi and a
// sim-llm process. The worker prepares the rebase itself, inside the sandbox. Origin: `main` and `worker/a`
// both change line 2 of app.txt; `worker/a` also adds notes.txt.

const log = createLogger({ service: "conflict-fix-test", level: process.env.LOG_LEVEL ?? "silent" });

const BASE_APP = "header\ncolor = red\nfooter\n";
const MAIN_APP = "header\ncolor = green\nfooter\n";
const BRANCH_APP = "header\ncolor = blue\nfooter\n";
const RESOLVED_APP = "header\ncolor = green\nhighlight = blue\nfooter\n";

let work: string;
let origin: string;
let tmpRoot: string;
let sim: SimLlmProcess;
let provider: SandboxProvider;

const handoffBlock = (status: string, summary: string, files: string[]) =>
  `Done.\n\n\`\`\`json\n${JSON.stringify({ status, summary, filesChanged: files, concerns: [], suggestions: [] }, null, 2)}\n\`\`\`\n`;

function git(dir: string, args: string[]): string {
  return execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@localhost", ...args], {
    cwd: dir,
    encoding: "utf8",
  });
}

function conflictTask(id: string, branch: string): Task {
  const input: TaskInput = {
    id,
    runId: "run-conflict",
    kind: "conflict-fix",
    description: "Resolve the conflicts of worker/a with main.",
    scope: ["app.txt"],
    acceptance: "the branch rebases cleanly onto main",
    branch,
    priority: 1,
    depth: 0,
    attempt: 1,
    repo: origin,
    baseBranch: "main",
    conflictBranch: "worker/a",
  };
  return Task.parse(input);
}

function runOpts(lines: WorkerLine[] = []): SandboxRunOptions {
  return {
    timeoutMs: 120_000,
    llm: { baseUrl: sim.url, model: "sim-1", maxTokens: 4096 },
    onLine: (line) => lines.push(line),
  };
}

/** Conversation for one task; the matcher also proves the prompt named the conflicted file. */
const conversation = (id: string, turns: unknown[]) => ({
  name: id,
  match: {
    system: "You are a worker",
    user: `/^## Task: ${id}\\n[\\s\\S]*in the middle of a rebase onto \`origin\\/main\`[\\s\\S]*\\n- app\\.txt\\n/`,
  },
  after: "error",
  turns,
});

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "longshot-conflict-it-"));
  // Sandboxes run as an unprivileged uid: their directories' parents must be traversable.
  await chmod(work, 0o711);
  origin = join(work, "origin");
  tmpRoot = join(work, "sandboxes");
  execFileSync("mkdir", ["-p", origin, tmpRoot]);
  git(origin, ["init", "-q", "-b", "main"]);
  await writeFile(join(origin, "app.txt"), BASE_APP);
  git(origin, ["add", "-A"]);
  git(origin, ["commit", "-q", "-m", "base"]);
  git(origin, ["checkout", "-q", "-b", "worker/a"]);
  await writeFile(join(origin, "app.txt"), BRANCH_APP);
  git(origin, ["commit", "-q", "-am", "a: blue"]);
  await writeFile(join(origin, "notes.txt"), "blue was chosen by task a\n");
  git(origin, ["add", "-A"]);
  git(origin, ["commit", "-q", "-m", "a: notes"]);
  git(origin, ["checkout", "-q", "main"]);
  await writeFile(join(origin, "app.txt"), MAIN_APP);
  git(origin, ["commit", "-q", "-am", "main: green"]);

  const resolveTurn = {
    toolCalls: [{ name: "write", arguments: { path: "app.txt", content: RESOLVED_APP } }],
  };
  const script = {
    model: "sim-1",
    conversations: [
      conversation("t-fix", [
        { toolCalls: [{ name: "bash", arguments: { command: "git diff --name-only --diff-filter=U" } }] },
        resolveTurn,
        {
          toolCalls: [
            { name: "bash", arguments: { command: "git add -A && GIT_EDITOR=true git rebase --continue" } },
          ],
        },
        { toolCalls: [{ name: "bash", arguments: { command: "git status --short --branch" } }] },
        { content: handoffBlock("complete", "Resolved app.txt keeping green and blue", ["app.txt"]) },
      ]),
      conversation("t-stuck", [
        resolveTurn,
        { toolCalls: [{ name: "bash", arguments: { command: "git add app.txt" } }] },
        { content: handoffBlock("complete", "Resolved app.txt", ["app.txt"]) },
      ]),
      conversation("t-markers", [
        {
          toolCalls: [
            { name: "bash", arguments: { command: "git add -A && GIT_EDITOR=true git rebase --continue" } },
          ],
        },
        { content: handoffBlock("complete", "Continued the rebase", ["app.txt"]) },
      ]),
    ],
  };
  const scriptPath = join(work, "script.json");
  await writeFile(scriptPath, JSON.stringify(script, null, 2));
  sim = await startSimLlm(["--script", scriptPath]);
  provider = createSandboxProvider({
    backend: createLocalBackend({ isolation: "bwrap", tmpRoot, log }),
    mirrors: createMirrors(join(work, "mirrors")),
    log,
    limits: { memoryMb: 1024, pidsMax: 256 },
  });
});

/** Sandbox directories are removed in the background after a run: none may stay. */
const noSandboxLeft = () => waitFor(async () => (await readdir(tmpRoot)).length === 0, 10_000);

afterAll(async () => {
  await sim?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe("conflict-fix tasks through the local (bubblewrap) provider, the real worker, Pi and sim-llm", () => {
  it("given an agent that resolves and continues the rebase, then the branch the provider pushes fast-forwards main", async () => {
    const branchBefore = await headSha(origin, "worker/a");
    const lines: WorkerLine[] = [];
    const result = await provider.run(conflictTask("t-fix", "worker/a-fix"), runOpts(lines));

    expect(result.handoff.concerns).toEqual([]);
    expect(result.handoff).toMatchObject({ status: "complete", branch: "worker/a-fix" });
    expect(result.handoff.head).toBeDefined();
    // Stats relative to origin/main: the resolution and the branch's other commit.
    expect([...result.handoff.filesChanged].sort()).toEqual(["app.txt", "notes.txt"]);
    expect(result.handoff.metrics).toMatchObject({ filesCreated: 1, filesModified: 1 });
    expect(result.handoff.metrics.toolCallCount).toBe(4);

    expect(await headSha(origin, "worker/a-fix")).toBe(result.handoff.head);
    expect(await isAncestor(origin, "main", "worker/a-fix")).toBe(true);
    expect(git(origin, ["show", "worker/a-fix:app.txt"])).toBe(RESOLVED_APP);
    expect(git(origin, ["show", "worker/a-fix:notes.txt"])).toBe("blue was chosen by task a\n");
    // Both of the branch's commits were replayed, with their messages, on top of main.
    expect(git(origin, ["log", "--format=%s", "main..worker/a-fix"]).trim().split("\n")).toEqual([
      "a: notes",
      "a: blue",
    ]);
    // The original branch is untouched.
    expect(await headSha(origin, "worker/a")).toBe(branchBefore);

    const progress = lines.filter((l) => l.kind === "progress").map((l) => l.message);
    expect(progress[0]).toMatch(/rebase stopped on 1 conflicted file/);

    // And main really fast-forwards to it.
    const clone = join(work, "ff-check");
    git(work, ["clone", "-q", origin, clone]);
    git(clone, ["merge", "-q", "--ff-only", "origin/worker/a-fix"]);
    expect(await headSha(clone)).toBe(result.handoff.head);
    await noSandboxLeft();
  });

  it("given an agent that stops mid-rebase, then the handoff fails and nothing is pushed", async () => {
    const result = await provider.run(conflictTask("t-stuck", "worker/a-stuck"), runOpts());

    expect(result.handoff.status).toBe("failed");
    expect(result.handoff.concerns[0]).toBe("rebase not completed");
    expect(result.handoff.head).toBeUndefined();
    expect(await branchExists(origin, "worker/a-stuck")).toBe(false);
    await noSandboxLeft();
  });

  it("given an agent that continues without resolving, then conflict markers fail it and nothing is pushed", async () => {
    const result = await provider.run(conflictTask("t-markers", "worker/a-markers"), runOpts());

    expect(result.handoff.status).toBe("failed");
    expect(result.handoff.concerns[0]).toBe("conflict markers left in: app.txt");
    expect(result.handoff.head).toBeUndefined();
    expect(await branchExists(origin, "worker/a-markers")).toBe(false);
  });

  it("given a conflict branch missing on origin, then setup fails with a failed handoff", async () => {
    const task = { ...conflictTask("t-nobranch", "worker/nobranch-fix"), conflictBranch: "worker/missing" };
    const result = await provider.run(task, runOpts());
    expect(result.handoff.status).toBe("failed");
    expect(result.handoff.summary).toMatch(/^sandbox setup failed: /);
    await noSandboxLeft();
  });
});
