import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Task, type TaskInput, type WorkerLine } from "@longshot/contracts";
import { branchExists, commitAll, headSha, initRepo, prepareTargetRepo } from "@longshot/git";
import { createLogger } from "@longshot/log";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocalSandboxProvider, type SandboxRunOptions } from "../src/index.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const WORKER_ENTRY = join(ROOT, "services/worker/src/main.ts");
const SYSTEM_PROMPT = join(ROOT, "prompts/worker.md");
const SIM_MAIN = join(ROOT, "services/sim-llm/src/main.ts");
const API_KEY = "sk-sandbox-test-SECRET-7f3a9c";
const log = createLogger({ service: "sandbox-test", level: process.env.LOG_LEVEL ?? "silent" });

let work: string;
let origin: string;
let tmpRoot: string;
let pidDir: string;
let sim: ChildProcess;
let baseUrl: string;

const handoffBlock = (status: string, summary: string, files: string[], concerns: string[] = []) =>
  `Done.\n\n\`\`\`json\n${JSON.stringify({ status, summary, filesChanged: files, concerns, suggestions: [] }, null, 2)}\n\`\`\`\n`;

function taskFor(id: string, scope: string[]): Task {
  const input: TaskInput = {
    id,
    runId: "run-sandbox",
    description: `Test task ${id}.`,
    scope,
    acceptance: "the file exists",
    branch: `worker/${id}`,
    priority: 5,
    depth: 0,
    attempt: 1,
    repo: origin,
    baseBranch: "main",
  };
  return Task.parse(input);
}

/**
 * A pass-through HTTP proxy in front of sim-llm that records the `model` of every request body (sim-llm
 * itself ignores the field) and the gateway routing headers, so a test can see what the agent really sent.
 */
async function startRecordingProxy(target: string): Promise<{
  url: string;
  models: string[];
  /** `x-longshot-run-id/x-longshot-task-id` of every request. */
  routing: string[];
  close(): Promise<void>;
}> {
  const upstream = new URL(target);
  const models: string[] = [];
  const routing: string[] = [];
  const server = createServer((req, res) => {
    routing.push(`${req.headers["x-longshot-run-id"]}/${req.headers["x-longshot-task-id"]}`);
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      try {
        const model = (JSON.parse(body.toString("utf8")) as { model?: unknown }).model;
        if (typeof model === "string") models.push(model);
      } catch {
        // not a JSON body (e.g. GET): nothing to record
      }
      const up = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        },
      );
      up.on("error", () => res.writeHead(502).end());
      up.end(body);
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    models,
    routing,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

function gitOut(dir: string, args: string[]): string {
  return execFileSync("git", args, { cwd: dir, encoding: "utf8" });
}

/** Alive = exists and is not a zombie (a container's PID 1 may never reap orphans). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

async function sandboxDirs(): Promise<string[]> {
  return (await readdir(tmpRoot)).filter((d) => d.startsWith("longshot-sandbox-"));
}

function runOpts(lines: WorkerLine[], timeoutMs = 120_000): SandboxRunOptions {
  return {
    timeoutMs,
    llm: { baseUrl, model: "sim-1", maxTokens: 4096, apiKey: API_KEY },
    onLine: (line) => lines.push(line),
  };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "longshot-sandbox-it-"));
  origin = join(work, "origin");
  tmpRoot = join(work, "sandboxes");
  pidDir = join(work, "pids");
  execFileSync("mkdir", ["-p", tmpRoot, pidDir]);
  await initRepo(origin, { branch: "main" });
  await writeFile(join(origin, "README.md"), "# target\n");
  await commitAll(origin, "initial commit");
  await prepareTargetRepo(origin);

  const script = {
    model: "sim-1",
    conversations: [
      {
        name: "ok",
        match: { system: "You are a worker", user: "## Task: t-ok\n" },
        turns: [
          { toolCalls: [{ name: "write", arguments: { path: "hello.txt", content: "hello from t-ok\n" } }] },
          { toolCalls: [{ name: "bash", arguments: { command: "ls" } }] },
          { content: handoffBlock("complete", "Wrote hello.txt", ["hello.txt"]) },
        ],
      },
      {
        name: "blocked",
        match: { system: "You are a worker", user: "## Task: t-blocked\n" },
        turns: [{ content: handoffBlock("blocked", "Cannot start", [], ["SPEC.md is missing"]) }],
      },
      {
        name: "slow",
        match: { system: "You are a worker", user: "## Task: t-slow\n" },
        turns: [
          {
            toolCalls: [
              {
                name: "bash",
                arguments: {
                  command: `echo $PPID > ${pidDir}/worker.pid; sleep 30 & echo $! > ${pidDir}/sleep.pid; wait`,
                },
              },
            ],
          },
          { content: handoffBlock("complete", "should never get here", []) },
        ],
      },
      {
        name: "model",
        match: { system: "You are a worker", user: "## Task: t-model\n" },
        turns: [
          { toolCalls: [{ name: "write", arguments: { path: "model.txt", content: "fallback\n" } }] },
          { content: handoffBlock("complete", "Wrote model.txt", ["model.txt"]) },
        ],
      },
      {
        name: "env",
        match: { system: "You are a worker", user: "## Task: t-env\n" },
        turns: [
          { toolCalls: [{ name: "bash", arguments: { command: "env > env.txt" } }] },
          { content: handoffBlock("complete", "Dumped env", ["env.txt"]) },
        ],
      },
    ],
  };
  const scriptPath = join(work, "script.json");
  await writeFile(scriptPath, JSON.stringify(script, null, 2));
  sim = spawn(process.execPath, [SIM_MAIN, "--script", scriptPath, "--port", "0", "--api-key", API_KEY], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  baseUrl = await new Promise<string>((resolveUrl, reject) => {
    const rl = createInterface({ input: sim.stdout as NodeJS.ReadableStream });
    rl.on("line", (line) => {
      const m = /sim-llm listening on (\S+)/.exec(line);
      if (m?.[1]) resolveUrl(m[1]);
    });
    sim.once("exit", (code) => reject(new Error(`sim-llm exited with ${code}`)));
  });
});

afterAll(async () => {
  if (sim && sim.exitCode === null) {
    const exited = new Promise((r) => sim.once("exit", r));
    sim.kill("SIGTERM");
    await exited;
  }
  if (work) await rm(work, { recursive: true, force: true });
});

describe("local sandbox provider with the real worker, Pi and sim-llm", () => {
  it("runs a task end to end: the branch is pushed, the handoff is complete, the sandbox is removed", async () => {
    const provider = createLocalSandboxProvider({
      workerEntry: WORKER_ENTRY,
      systemPromptPath: SYSTEM_PROMPT,
      tmpRoot,
      log,
    });
    const lines: WorkerLine[] = [];
    const task = taskFor("t-ok", ["hello.txt"]);
    const result = await provider.run(task, runOpts(lines));

    expect(result.handoff.concerns).toEqual([]);
    expect(result.handoff).toMatchObject({ taskId: "t-ok", status: "complete", summary: "Wrote hello.txt" });
    expect(result.handoff.filesChanged).toContain("hello.txt");
    expect(result.handoff.metrics.toolCallCount).toBeGreaterThanOrEqual(2);
    expect(result.handoff.metrics.filesCreated).toBe(1);
    expect(result.handoff.metrics.linesAdded).toBe(1);
    expect(result.handoff.metrics.tokensUsed).toBeGreaterThan(0);
    expect(result).toMatchObject({ exitCode: 0, timedOut: false });

    expect(await branchExists(origin, "worker/t-ok")).toBe(true);
    expect(await headSha(origin, "worker/t-ok")).toBe(result.handoff.head);
    expect(gitOut(origin, ["show", "worker/t-ok:hello.txt"])).toBe("hello from t-ok\n");
    expect(gitOut(origin, ["log", "-1", "--format=%s", "worker/t-ok"]).trim()).toBe("t-ok: Wrote hello.txt");
    expect(gitOut(origin, ["rev-parse", "main"]).trim()).toBe(
      gitOut(origin, ["rev-parse", "worker/t-ok~1"]).trim(),
    );

    const progress = lines.filter((l) => l.kind === "progress").map((l) => l.message);
    expect(progress).toContain("tool write");
    expect(progress).toContain("tool bash");
    expect(lines.at(-1)?.kind).toBe("handoff");
    expect(existsSync(join(tmpRoot, result.sandboxId))).toBe(false);
    expect(await sandboxDirs()).toEqual([]);
  });

  it("reports the agent's blocked status and pushes nothing when nothing changed", async () => {
    const provider = createLocalSandboxProvider({
      workerEntry: WORKER_ENTRY,
      systemPromptPath: SYSTEM_PROMPT,
      tmpRoot,
      log,
    });
    const result = await provider.run(taskFor("t-blocked", ["SPEC.md"]), runOpts([]));

    expect(result.handoff).toMatchObject({ status: "blocked", summary: "Cannot start", filesChanged: [] });
    expect(result.handoff.concerns).toContain("SPEC.md is missing");
    expect(result.handoff.head).toBeUndefined();
    expect(await branchExists(origin, "worker/t-blocked")).toBe(false);
    expect(await sandboxDirs()).toEqual([]);
  });

  it("fails a task that outlives its deadline and leaves no process or directory behind", async () => {
    const provider = createLocalSandboxProvider({
      workerEntry: WORKER_ENTRY,
      systemPromptPath: SYSTEM_PROMPT,
      tmpRoot,
      log,
    });
    const started = Date.now();
    const result = await provider.run(taskFor("t-slow", ["slow.txt"]), runOpts([], 12_000));

    expect(Date.now() - started).toBeLessThan(12_000);
    expect(result.handoff.status).toBe("failed");
    // The worker's own deadline (workerDeadlineMs(12000) = 9600) fires before the provider's kill.
    expect(result.timedOut).toBe(false);
    expect(result.handoff.concerns).toEqual(["timed out after 9600 ms"]);
    expect(result.handoff.metrics.toolCallCount).toBe(1);
    const workerPid = Number(readFileSync(join(pidDir, "worker.pid"), "utf8"));
    const sleepPid = Number(readFileSync(join(pidDir, "sleep.pid"), "utf8"));
    expect(workerPid).toBeGreaterThan(0);
    expect(isAlive(workerPid)).toBe(false);
    expect(isAlive(sleepPid)).toBe(false);
    expect(await sandboxDirs()).toEqual([]);
  });

  it("keeps NATS settings and the model key out of the sandbox and the pushed branch", async () => {
    const saved = { NATS_URL: process.env.NATS_URL, NATS_TOKEN: process.env.NATS_TOKEN };
    process.env.NATS_URL = "nats://must-not-leak:4222";
    process.env.NATS_TOKEN = "nats-token-must-not-leak";
    try {
      const provider = createLocalSandboxProvider({
        workerEntry: WORKER_ENTRY,
        systemPromptPath: SYSTEM_PROMPT,
        tmpRoot,
        log,
      });
      const result = await provider.run(taskFor("t-env", ["env.txt"]), runOpts([]));
      // complete proves the worker authenticated to sim-llm (it answers 401 without the key)
      expect(result.handoff.status).toBe("complete");

      const env = gitOut(origin, ["show", "worker/t-env:env.txt"]);
      expect(env).toMatch(/^PATH=/m);
      expect(env).not.toContain("NATS");
      expect(env).not.toContain("must-not-leak");
      expect(env).not.toContain("LONGSHOT_LLM_API_KEY");
      const files = gitOut(origin, ["ls-tree", "-r", "--name-only", "worker/t-env"]).trim().split("\n");
      for (const file of files) {
        expect(gitOut(origin, ["show", `worker/t-env:${file}`])).not.toContain(API_KEY);
      }
      expect(gitOut(origin, ["log", "--format=%B", "worker/t-env"])).not.toContain(API_KEY);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it("applies task.model: Pi asks the endpoint for the task's model, not the dispatcher's", async () => {
    const proxy = await startRecordingProxy(baseUrl);
    try {
      const provider = createLocalSandboxProvider({
        workerEntry: WORKER_ENTRY,
        systemPromptPath: SYSTEM_PROMPT,
        tmpRoot,
        log,
      });
      const lines: WorkerLine[] = [];
      const task = { ...taskFor("t-model", ["model.txt"]), model: "sim-fallback" };
      const opts = runOpts(lines);
      const result = await provider.run(task, { ...opts, llm: { ...opts.llm, baseUrl: proxy.url } });

      expect(result.handoff).toMatchObject({ status: "complete", concerns: [] });
      // One request per model call (write, then the handoff), all for the task's model.
      expect(proxy.models).toEqual(["sim-fallback", "sim-fallback"]);
      // Every call names its run and task (the gateway's session affinity and accounting headers).
      expect(proxy.routing).toEqual([`${task.runId}/t-model`, `${task.runId}/t-model`]);
      const first = lines.find((l) => l.kind === "progress");
      expect(first?.kind === "progress" ? first.message : "").toContain("model sim-fallback");
    } finally {
      await proxy.close();
    }
  });

  it("runs the command harness: a shell command that writes a file and prints a handoff", async () => {
    const handoff = JSON.stringify({
      status: "complete",
      summary: "cmd wrote cmd.txt",
      filesChanged: ["cmd.txt"],
      concerns: [],
      suggestions: [],
    });
    const provider = createLocalSandboxProvider({
      workerEntry: WORKER_ENTRY,
      systemPromptPath: SYSTEM_PROMPT,
      tmpRoot,
      log,
      harness: "command",
      workerCommand: `head -1 {prompt_file} > cmd.txt && echo '${handoff}'`,
    });
    const result = await provider.run(taskFor("t-cmd", ["cmd.txt"]), runOpts([]));
    expect(result.handoff).toMatchObject({
      status: "complete",
      summary: "cmd wrote cmd.txt",
      filesChanged: ["cmd.txt"],
    });
    expect(gitOut(origin, ["show", "worker/t-cmd:cmd.txt"])).toBe("## Task: t-cmd\n");
  });
});

describe("local sandbox provider with misbehaving workers", () => {
  it("kills a worker that ignores SIGTERM, with its children, after the grace period", async () => {
    const entry = join(work, "stubborn-worker.mjs");
    await writeFile(
      entry,
      [
        'import { spawn } from "node:child_process";',
        'import { writeFileSync } from "node:fs";',
        'process.on("SIGTERM", () => {});',
        'const child = spawn("sleep", ["60"], { stdio: "ignore" });',
        `writeFileSync(${JSON.stringify(join(pidDir, "stubborn.pids"))}, process.pid + " " + child.pid);`,
        'console.log(JSON.stringify({ kind: "progress", message: "stubborn" }));',
        "console.log('not json');",
        "setInterval(() => {}, 1000);",
      ].join("\n"),
    );
    const provider = createLocalSandboxProvider({
      workerEntry: entry,
      systemPromptPath: SYSTEM_PROMPT,
      tmpRoot,
      log,
      killGraceMs: 300,
    });
    const lines: WorkerLine[] = [];
    const result = await provider.run(taskFor("t-stubborn", []), runOpts(lines, 1_500));

    expect(result.timedOut).toBe(true);
    expect(result.exitCode).toBeNull();
    expect(result.handoff).toMatchObject({ status: "failed", concerns: ["sandbox timed out after 2 s"] });
    expect(lines).toEqual([{ kind: "progress", message: "stubborn" }]);
    const pids = readFileSync(join(pidDir, "stubborn.pids"), "utf8").split(" ").map(Number);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(await sandboxDirs()).toEqual([]);
  });

  it("turns a crash without a handoff into a failed handoff carrying the stderr tail", async () => {
    const entry = join(work, "crashing-worker.mjs");
    await writeFile(entry, 'console.error("boom: something broke"); process.exit(3);\n');
    const provider = createLocalSandboxProvider({
      workerEntry: entry,
      systemPromptPath: SYSTEM_PROMPT,
      tmpRoot,
      log,
    });
    const result = await provider.run(taskFor("t-crash", []), runOpts([]));
    expect(result).toMatchObject({ exitCode: 3, timedOut: false });
    expect(result.handoff.status).toBe("failed");
    expect(result.handoff.summary).toBe(
      "worker exited with 3 without a handoff; stderr: boom: something broke",
    );
    expect(await sandboxDirs()).toEqual([]);
  });

  it("aborts on the caller's signal", async () => {
    const entry = join(work, "sleepy-worker.mjs");
    await writeFile(
      entry,
      'console.log(JSON.stringify({ kind: "progress", message: "up" }));\nsetInterval(() => {}, 1000);\n',
    );
    const provider = createLocalSandboxProvider({
      workerEntry: entry,
      systemPromptPath: SYSTEM_PROMPT,
      tmpRoot,
      log,
    });
    const controller = new AbortController();
    // Abort as soon as the worker is demonstrably running.
    const result = await provider.run(taskFor("t-abort", []), {
      ...runOpts([]),
      onLine: () => controller.abort(),
      signal: controller.signal,
    });
    expect(result).toMatchObject({
      timedOut: false,
      handoff: { status: "failed", concerns: ["sandbox aborted by the dispatcher"] },
    });
    expect(await sandboxDirs()).toEqual([]);
  });

  it("fails cleanly when the repository cannot be cloned", async () => {
    const provider = createLocalSandboxProvider({
      workerEntry: WORKER_ENTRY,
      systemPromptPath: SYSTEM_PROMPT,
      tmpRoot,
      log,
    });
    const task = { ...taskFor("t-noclone", []), repo: join(work, "does-not-exist") };
    const result = await provider.run(task, runOpts([]));
    expect(result.exitCode).toBeNull();
    expect(result.handoff.status).toBe("failed");
    expect(result.handoff.summary).toMatch(/^sandbox setup failed: /);
    expect(await sandboxDirs()).toEqual([]);
  });
});
