import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { Task, type TaskInput, type WorkerLine } from "@longshot/contracts";
import { branchExists, createMirrors, headSha, initRepo, prepareTargetRepo } from "@longshot/git";
import { createLogger } from "@longshot/log";
import {
  type ModalEmulator,
  processesWith,
  type SimLlmProcess,
  startModalEmulator,
  startSimLlm,
  tempDir,
  waitFor,
} from "@longshot/testkit";
import { ModalClient } from "modal";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createLocalBackend,
  createSandboxProvider,
  type SandboxBackend,
  type SandboxProvider,
  type SandboxRunOptions,
} from "../src/index.ts";
import { createModalBackend, MODAL_OWNER_TAG } from "../src/modal.ts";

// The provider contract, run against every isolating provider on real parts: a real git origin, the real
// worker and Pi agent in the sandbox, sim-llm as the model behind the provider's relay. Each case states
// what every provider must do: workspace and branch, handoff, timeout kills everything, abort, limits,
// isolation, cleanup, orphan reaping. (The Modal provider joins this list on its emulator.)

const API_KEY = "sk-contract-SECRET-93ab71";
const log = createLogger({ service: "contract-test", level: process.env.LOG_LEVEL ?? "silent" });

let work: Awaited<ReturnType<typeof tempDir>>;
let origin: string;
let canary: string;
let sim: SimLlmProcess;
let tcp: Server;
let tcpPort: number;
let tcpConnections = 0;

const handoffBlock = (status: string, summary: string, files: string[], concerns: string[] = []) =>
  `Done.\n\n\`\`\`json\n${JSON.stringify({ status, summary, filesChanged: files, concerns, suggestions: [] }, null, 2)}\n\`\`\`\n`;

const bash = (command: string) => ({ toolCalls: [{ name: "bash", arguments: { command } }] });

function taskFor(id: string, scope: string[] = [`${id}.txt`]): Task {
  const input: TaskInput = {
    id,
    runId: "run-contract",
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

function runOpts(lines: WorkerLine[] = [], timeoutMs = 60_000): SandboxRunOptions {
  return {
    timeoutMs,
    llm: { baseUrl: sim.url, model: "sim-1", maxTokens: 4096, apiKey: API_KEY },
    onLine: (line) => lines.push(line),
  };
}

const gitOut = (dir: string, args: string[]) => execFileSync("git", args, { cwd: dir, encoding: "utf8" });

/** The hostile probes: each line says what the agent tried and whether it worked. */
const PROBES = [
  `echo "home: $(cat ${"$"}CANARY 2>/dev/null || echo refused)"`,
  `(exec 3<>/dev/tcp/127.0.0.1/${"$"}TCP_PORT) 2>/dev/null && echo "tcp: connected" || echo "tcp: refused"`,
  `test -e /proc/${"$"}HOST_PID && echo "host-proc: visible" || echo "host-proc: refused"`,
  `cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c SECRET | sed 's/^/environ-secrets: /'`,
  `touch /usr/probe 2>/dev/null && echo "write-usr: ok" || echo "write-usr: refused"`,
  `touch /probe 2>/dev/null && echo "write-root: ok" || echo "write-root: refused"`,
  `touch ${"$"}ORIGIN/probe 2>/dev/null && echo "write-origin: ok" || echo "write-origin: refused"`,
  `git push -q origin HEAD:refs/heads/evil 2>/dev/null && echo "push: ok" || echo "push: refused"`,
  `env | grep -c -i -E 'key|token|secret|nats' | sed 's/^/env-secrets: /'`,
  `echo "uid: $(id -u)"`,
];

interface Flavour {
  name: string;
  isolating: boolean;
  /** Whether the backend reports which limit a sandbox hit (local: from its cgroup; Modal: it cannot). */
  reportsLimits: boolean;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  backend(stateDir: string): SandboxBackend;
  /** Sandboxes of this flavour still present (directories, live sandboxes), for cleanup checks. */
  leftovers(stateDir: string): Promise<string[]>;
}

let emulator: ModalEmulator | undefined;

const flavours: Flavour[] = [
  {
    name: "local (bubblewrap)",
    isolating: true,
    reportsLimits: true,
    backend: (stateDir) =>
      createLocalBackend({
        isolation: "bwrap",
        tmpRoot: join(stateDir, "sandboxes"),
        registryDir: join(stateDir, "registry"),
        log,
      }),
    leftovers: async (stateDir) => {
      // Directory removal runs in the background after terminate(): give it a moment.
      for (let i = 0; i < 100; i++) {
        const left = (await readdir(join(stateDir, "sandboxes")).catch(() => [])).filter((d) =>
          d.startsWith("longshot-sandbox-"),
        );
        if (left.length === 0) return [];
        await new Promise((r) => setTimeout(r, 50));
      }
      return readdir(join(stateDir, "sandboxes"));
    },
  },
  {
    // The real modal SDK over real gRPC, against the emulator, whose sandboxes are bubblewrap boxes.
    name: "modal (emulator)",
    isolating: true,
    reportsLimits: false,
    async setup() {
      emulator = await startModalEmulator();
      // modal 0.11.1 reads the server and the token only from the environment, when a client is made.
      Object.assign(process.env, emulator.env);
    },
    async teardown() {
      await emulator?.stop();
      for (const k of Object.keys(emulator?.env ?? {})) delete process.env[k];
    },
    backend: () =>
      createModalBackend({
        appName: "longshot-contract",
        image: "registry.example/longshot-sandbox:test",
        owner: "contract",
        log,
        client: new ModalClient(),
      }),
    leftovers: async () =>
      (emulator?.sandboxes() ?? [])
        .filter((s) => s.tags[MODAL_OWNER_TAG] === "contract")
        .map((s) => s.sandboxId),
  },
];

beforeAll(async () => {
  work = await tempDir("longshot-contract-");
  // Sandboxes run as an unprivileged uid: their directories' parents must be traversable.
  await chmod(work.path, 0o711);
  origin = join(work.path, "origin");
  await initRepo(origin, { branch: "main" });
  await writeFile(join(origin, "README.md"), "# target\n");
  execFileSync("git", ["-c", "user.name=T", "-c", "user.email=t@t", "add", "-A"], { cwd: origin });
  execFileSync("git", ["-c", "user.name=T", "-c", "user.email=t@t", "commit", "-qm", "initial"], {
    cwd: origin,
  });
  await prepareTargetRepo(origin);
  canary = join(work.path, "home", ".ssh", "id_canary");
  await mkdir(join(work.path, "home", ".ssh"), { recursive: true });
  await writeFile(canary, "CANARY-PRIVATE-KEY\n");
  tcp = createServer((s) => {
    tcpConnections++;
    s.destroy();
  });
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
  tcpPort = (tcp.address() as { port: number }).port;

  const probes = PROBES.join("; ")
    .replaceAll("$CANARY", canary)
    .replaceAll("$TCP_PORT", String(tcpPort))
    .replaceAll("$HOST_PID", String(process.pid))
    .replaceAll("$ORIGIN", origin);
  const script = {
    model: "sim-1",
    conversations: [
      {
        name: "ok",
        match: { system: "You are a worker", user: "## Task: t-ok\n" },
        turns: [
          { toolCalls: [{ name: "write", arguments: { path: "t-ok.txt", content: "hello from t-ok\n" } }] },
          bash("ls"),
          { content: handoffBlock("complete", "Wrote t-ok.txt", ["t-ok.txt"]) },
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
        turns: [bash("sleep 3601 & wait"), { content: handoffBlock("complete", "never", []) }],
      },
      {
        name: "frozen",
        match: { system: "You are a worker", user: "## Task: t-frozen\n" },
        // Stops the worker itself: only the provider's own deadline can end this sandbox.
        turns: [
          bash("sleep 3602 & kill -STOP $PPID; wait"),
          { content: handoffBlock("complete", "never", []) },
        ],
      },
      {
        name: "abort",
        match: { system: "You are a worker", user: "## Task: t-abort\n" },
        turns: [bash("sleep 3603 & wait"), { content: handoffBlock("complete", "never", []) }],
      },
      {
        name: "hostile",
        match: { system: "You are a worker", user: "## Task: t-hostile\n" },
        turns: [
          bash(`(${probes}) > t-hostile.txt 2>&1`),
          { content: handoffBlock("complete", "probed", ["t-hostile.txt"]) },
        ],
      },
      {
        name: "memhog",
        match: { system: "You are a worker", user: "## Task: t-memhog\n" },
        turns: [
          bash(
            `node -e 'const a=[]; for (;;) a.push(Buffer.alloc(1<<20, 1))'; echo "hog exit $?" > t-memhog.txt`,
          ),
          { content: handoffBlock("complete", "allocated", ["t-memhog.txt"]) },
        ],
      },
      {
        name: "forkbomb",
        match: { system: "You are a worker", user: "## Task: t-forkbomb\n" },
        turns: [
          bash("f(){ f|f & }; f; sleep 2; echo done > t-forkbomb.txt"),
          { content: handoffBlock("complete", "forked", ["t-forkbomb.txt"]) },
        ],
      },
      {
        name: "model",
        match: { system: "You are a worker", user: "## Task: t-model\n" },
        turns: [
          { toolCalls: [{ name: "write", arguments: { path: "t-model.txt", content: "fallback\n" } }] },
          { content: handoffBlock("complete", "Wrote t-model.txt", ["t-model.txt"]) },
        ],
      },
    ],
  };
  const scriptPath = join(work.path, "script.json");
  await writeFile(scriptPath, JSON.stringify(script, null, 2));
  sim = await startSimLlm(["--script", scriptPath, "--api-key", API_KEY]);
});

afterAll(async () => {
  await sim?.stop();
  await new Promise<void>((r) => (tcp ? tcp.close(() => r()) : r()));
  await work?.cleanup();
});

describe.each(flavours)("sandbox provider contract: $name", (flavour) => {
  let stateDir: string;
  let provider: SandboxProvider;
  const make = (extra: Partial<Parameters<typeof createSandboxProvider>[0]> = {}) =>
    createSandboxProvider({
      backend: flavour.backend(stateDir),
      mirrors: createMirrors(join(stateDir, "mirrors")),
      log,
      limits: { memoryMb: 768, pidsMax: 256, cpuCores: 1 },
      ...extra,
    });

  afterAll(async () => {
    await flavour.teardown?.();
  });

  beforeAll(async () => {
    await flavour.setup?.();
    stateDir = join(work.path, flavour.name.replace(/\W+/g, "-"));
    await mkdir(join(stateDir, "sandboxes"), { recursive: true, mode: 0o711 });
    await chmod(stateDir, 0o711);
    provider = make();
  });

  it("runs a task: a fresh clone, the worker's branch pushed to the target by the provider, a complete handoff", async () => {
    const lines: WorkerLine[] = [];
    const result = await provider.run(taskFor("t-ok"), runOpts(lines));

    expect(result.handoff.concerns).toEqual([]);
    expect(result.handoff).toMatchObject({ taskId: "t-ok", status: "complete", summary: "Wrote t-ok.txt" });
    expect(result.handoff.filesChanged).toEqual(["t-ok.txt"]);
    expect(result.handoff.metrics).toMatchObject({ filesCreated: 1, linesAdded: 1 });
    expect(result.handoff.metrics.tokensUsed).toBeGreaterThan(0);
    expect(result).toMatchObject({ exitCode: 0, timedOut: false });
    expect(await headSha(origin, "worker/t-ok")).toBe(result.handoff.head);
    expect(gitOut(origin, ["show", "worker/t-ok:t-ok.txt"])).toBe("hello from t-ok\n");
    expect(gitOut(origin, ["rev-parse", "main"]).trim()).toBe(
      gitOut(origin, ["rev-parse", "worker/t-ok~1"]).trim(),
    );
    const progress = lines.flatMap((l) => (l.kind === "progress" ? [l.message] : []));
    expect(progress).toContain("tool write");
    expect(lines.at(-1)?.kind).toBe("handoff");
    // Relay lines never reach the caller.
    expect(lines.every((l) => l.kind === "progress" || l.kind === "handoff")).toBe(true);
    expect(await flavour.leftovers(stateDir)).toEqual([]);
  });

  it("reports blocked and pushes nothing when nothing changed", async () => {
    const result = await provider.run(taskFor("t-blocked", ["SPEC.md"]), runOpts());
    expect(result.handoff).toMatchObject({ status: "blocked", summary: "Cannot start", filesChanged: [] });
    expect(result.handoff.concerns).toContain("SPEC.md is missing");
    expect(result.handoff.head).toBeUndefined();
    expect(await branchExists(origin, "worker/t-blocked")).toBe(false);
  });

  it("hands off at the worker's deadline and leaves no process behind", async () => {
    // 20 s: the worker's deadline is 16 s, and it has the 4 s between to stop its tools, commit and hand off
    // (at 8 s, a loaded CI machine's Modal emulator took more than the 2 s reserve, and the provider killed it).
    const result = await provider.run(taskFor("t-slow"), runOpts([], 20_000));
    expect(result.handoff.status, JSON.stringify(result.handoff)).toBe("failed");
    expect(result.timedOut).toBe(false);
    expect(result.handoff.concerns).toEqual(["timed out after 16000 ms"]);
    expect(await processesWith("sleep 3601")).toEqual([]);
  });

  it("kills the whole sandbox at the provider's deadline when the worker cannot hand off", async () => {
    const started = Date.now();
    // 12 s: the worker must reach its frozen bash call before its own deadline (9.6 s), also on a loaded
    // machine (at 6 s, a CI run's worker handed off at its own 4 s deadline before the agent's first call).
    const result = await provider.run(taskFor("t-frozen"), runOpts([], 12_000));
    expect(Date.now() - started).toBeLessThan(40_000);
    expect(result, JSON.stringify(result.handoff)).toMatchObject({ timedOut: true, exitCode: null });
    expect(result.handoff).toMatchObject({ status: "failed", concerns: ["sandbox timed out after 12 s"] });
    expect(await processesWith("sleep 3602")).toEqual([]);
    expect(await flavour.leftovers(stateDir)).toEqual([]);
  });

  it("aborts on the caller's signal", async () => {
    const controller = new AbortController();
    const result = await provider.run(taskFor("t-abort"), {
      ...runOpts(),
      onLine: (l) => {
        if (l.kind === "progress" && l.message === "tool bash") setTimeout(() => controller.abort(), 300);
      },
      signal: controller.signal,
    });
    expect(result.handoff).toMatchObject({
      status: "failed",
      concerns: ["sandbox aborted by the dispatcher"],
    });
    expect(await processesWith("sleep 3603")).toEqual([]);
  });

  it("applies task.model and the task's credential through the relay; the sandbox never holds the key", async () => {
    const task = { ...taskFor("t-model"), model: "sim-fallback" };
    const lines: WorkerLine[] = [];
    const result = await provider.run(task, runOpts(lines));
    // complete proves the relay authenticated to sim-llm (it answers 401 without the key)
    expect(result.handoff).toMatchObject({ status: "complete", concerns: [] });
    const first = lines.find((l) => l.kind === "progress");
    expect(first?.kind === "progress" ? first.message : "").toContain("model sim-fallback");
  });

  it("fails cleanly when the target cannot be fetched", async () => {
    const task = { ...taskFor("t-noclone"), repo: join(work.path, "does-not-exist") };
    const result = await provider.run(task, runOpts());
    expect(result.handoff.status).toBe("failed");
    expect(result.handoff.summary).toMatch(/^sandbox setup failed: /);
  });

  it("runs the command harness", async () => {
    const handoff = JSON.stringify({
      status: "complete",
      summary: "cmd wrote t-cmd.txt",
      filesChanged: ["t-cmd.txt"],
      concerns: [],
      suggestions: [],
    });
    const cmd = make({
      harness: "command",
      workerCommand: `head -1 {prompt_file} > t-cmd.txt && echo '${handoff}'`,
    });
    const result = await cmd.run(taskFor("t-cmd"), runOpts());
    expect(result.handoff).toMatchObject({ status: "complete", summary: "cmd wrote t-cmd.txt" });
    expect(gitOut(origin, ["show", "worker/t-cmd:t-cmd.txt"])).toBe("## Task: t-cmd\n");
  });

  it("turns a worker crash into a failed handoff with the stderr tail", async () => {
    const cmd = make({
      harness: "command",
      workerCommand: "echo 'boom: something broke' >&2; kill -KILL $PPID",
    });
    const result = await cmd.run(taskFor("t-crash"), runOpts());
    expect(result.handoff.status).toBe("failed");
    expect(result.handoff.summary).toMatch(/^worker exited with/);
  });

  it("runs checks on a commit without network, each with its own timeout", async () => {
    const mirror = createMirrors(join(stateDir, "mirrors")).get(origin);
    await mirror.sync();
    const commit = await mirror.resolve("refs/heads/main");
    const checks = await provider.runChecks({
      repo: origin,
      branch: "main",
      commit,
      timeoutMs: 3_000,
      checks: [
        { name: "build", command: "test -f README.md && git rev-parse HEAD" },
        {
          name: "typecheck",
          command: `node -e 'require("net").connect(${tcpPort}, "127.0.0.1").on("connect", () => process.exit(0)).on("error", () => process.exit(1))'`,
        },
        { name: "test", command: "sleep 3604" },
      ],
    });
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ["build", true],
      ["typecheck", !flavour.isolating],
      ["test", false],
    ]);
    expect(checks[0]?.output.trim()).toBe(commit);
    expect(checks[2]?.output).toContain("timed out after 3000 ms");
    expect(await processesWith("sleep 3604")).toEqual([]);
  });

  it("runs checks on a commit only a private ref of the mirror holds; an abort ends them", async () => {
    const mirror = createMirrors(join(stateDir, "mirrors")).get(origin);
    await mirror.sync();
    // A merge queue candidate: a commit the target never saw, held by the mirror under a private ref only.
    const git = (args: string[], input?: string) =>
      execFileSync("git", args, { cwd: mirror.dir, encoding: "utf8", ...(input ? { input } : {}) }).trim();
    const blob = git(["hash-object", "-w", "--stdin"], "candidate\n");
    const tree = git(["mktree"], `100644 blob ${blob}\tCANDIDATE.txt\n`);
    const main = await mirror.resolve("refs/heads/main");
    const commit = git(
      ["-c", "user.name=T", "-c", "user.email=t@t", "commit-tree", tree, "-p", main, "-m", "candidate"],
      undefined,
    );
    const ref = `refs/longshot/candidates/contract-${flavour.name.replace(/\W+/g, "-")}`;
    git(["update-ref", ref, commit]);
    const checks = await provider.runChecks({
      repo: origin,
      ref,
      commit,
      timeoutMs: 10_000,
      checks: [{ name: "test", command: "cat CANDIDATE.txt && git rev-parse HEAD" }],
    });
    expect(checks.map((c) => [c.name, c.ok])).toEqual([["test", true]]);
    expect(checks[0]?.output).toBe(`candidate\n${commit}\n`);

    const abort = new AbortController();
    const running = provider.runChecks({
      repo: origin,
      ref,
      commit,
      timeoutMs: 60_000,
      checks: [{ name: "test", command: "touch started; sleep 3607" }],
      signal: abort.signal,
    });
    await waitFor(
      async () => ((await processesWith("sleep 3607")).length > 0 ? true : undefined),
      30_000,
      50,
    );
    abort.abort(new Error("candidate superseded"));
    await expect(running).rejects.toThrow("candidate superseded");
    expect(await processesWith("sleep 3607")).toEqual([]);
    expect(await flavour.leftovers(stateDir)).toEqual([]);
  });

  describe.runIf(flavour.isolating)("isolation and limits", () => {
    it("refuses every escape a hostile agent tries, and the task still hands off", async () => {
      const before = tcpConnections;
      const result = await provider.run(taskFor("t-hostile"), runOpts());
      expect(result.handoff.status).toBe("complete");
      const report = gitOut(origin, ["show", "worker/t-hostile:t-hostile.txt"]);
      expect(report).toContain("home: refused");
      expect(report).toContain("tcp: refused");
      expect(report).toContain("host-proc: refused");
      expect(report).toContain("environ-secrets: 0");
      expect(report).toContain("write-usr: refused");
      expect(report).toContain("write-root: refused");
      expect(report).toContain("write-origin: refused");
      expect(report).toContain("push: refused");
      expect(report).toContain("env-secrets: 0");
      expect(report).not.toContain("CANARY-PRIVATE-KEY");
      expect(report).not.toMatch(/uid: 0\n/);
      expect(tcpConnections).toBe(before);
      expect(existsSync(join(origin, "probe"))).toBe(false);
      expect(await branchExists(origin, "evil")).toBe(false);
    });

    it("kills what allocates past the memory limit; the task ends with a handoff", async () => {
      const result = await provider.run(taskFor("t-memhog"), runOpts());
      if (flavour.reportsLimits) {
        // The provider knows: the attempt fails cleanly and nothing of it lands.
        expect(result.limitHit).toBe("memory");
        expect(result.handoff.status).toBe("failed");
        expect(result.handoff.concerns[0]).toBe("sandbox hit its memory limit");
        expect(result.handoff.head).toBeUndefined();
      } else {
        // Only the agent saw it: its allocation was killed (SIGKILL, 137) and the worker handed off.
        expect(result.handoff.status).toBe("complete");
        expect(gitOut(origin, ["show", `${result.handoff.head}:t-memhog.txt`])).toBe("hog exit 137\n");
      }
    });

    it("contains a fork bomb at the process limit; the task ends with a handoff", async () => {
      // A provider that cannot see the limit leaves the bomb until the attempt's deadline: keep that short.
      const result = await provider.run(
        taskFor("t-forkbomb"),
        runOpts([], flavour.reportsLimits ? 60_000 : 20_000),
      );
      expect(result.handoff.taskId).toBe("t-forkbomb");
      if (flavour.reportsLimits) {
        // Stopped when the limit was hit: a failed attempt with no branch, not a sandbox left to choke.
        expect(result.limitHit).toBe("processes");
        expect(result.handoff.status).toBe("failed");
        expect(result.handoff.concerns[0]).toBe("sandbox hit its processes limit");
        expect(result.handoff.head).toBeUndefined();
      }
      expect(await flavour.leftovers(stateDir)).toEqual([]);
    });

    it("holds checks to the same limits: a fork bomb and a memory hog in a sweep fail, and nothing survives", async () => {
      const mirror = createMirrors(join(stateDir, "mirrors")).get(origin);
      await mirror.sync();
      const checks = await provider.runChecks({
        repo: origin,
        branch: "main",
        commit: await mirror.resolve("refs/heads/main"),
        timeoutMs: 4_000,
        checks: [
          { name: "build", command: "f(){ f|f & }; f; sleep 3606; wait" },
          { name: "test", command: `node -e 'const a=[]; for (;;) a.push(Buffer.alloc(1<<20, 1))'` },
        ],
      });
      expect(checks.map((c) => [c.name, c.ok])).toEqual([
        ["build", false],
        ["test", false],
      ]);
      expect(checks[1]?.exitCode === null || checks[1]?.exitCode === 137).toBe(true);
      expect(await processesWith("sleep 3606")).toEqual([]);
      expect(await flavour.leftovers(stateDir)).toEqual([]);
    });

    it("reaps the sandboxes a crashed predecessor left", async () => {
      const backend = flavour.backend(stateDir);
      const orphan = await backend.create({
        id: "orphan-1",
        labels: { purpose: "test" },
        limits: { pidsMax: 64 },
        timeoutMs: 600_000,
      });
      const p = orphan.exec({ argv: ["sleep", "3605"], cwd: orphan.workspace, env: orphan.env });
      for (let i = 0; i < 100 && (await processesWith("sleep 3605")).length === 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect((await processesWith("sleep 3605")).length).toBeGreaterThanOrEqual(1);
      // A new instance (as after a restart) reaps what the old one recorded.
      const reaped = await flavour.backend(stateDir).reap();
      expect(reaped).toBeGreaterThanOrEqual(1);
      await p.wait();
      for (let i = 0; i < 100 && (await processesWith("sleep 3605")).length > 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(await processesWith("sleep 3605")).toEqual([]);
      expect(await flavour.leftovers(stateDir)).toEqual([]);
    });
  });
});
