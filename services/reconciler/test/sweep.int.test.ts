import { chmod, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMirrors } from "@longshot/git";
import { createLogger } from "@longshot/log";
import {
  type CheckOverrides,
  createLocalBackend,
  createSandboxProvider,
  type SandboxProvider,
} from "@longshot/sandbox";
import { makeRepo, waitFor } from "@longshot/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createSweeper, type SweepResult } from "../src/adapters/sweep.ts";

const TIMEOUT_MS = 120_000;

const PACKAGE_JSON = JSON.stringify({
  name: "sweep-target",
  private: true,
  type: "module",
  scripts: { test: "node --test" },
});
const testFile = (expected: number) =>
  [
    'import assert from "node:assert/strict";',
    'import { test } from "node:test";',
    'test("adds", () => {',
    `  assert.equal(1 + 1, ${expected}, "SWEEP_MARKER_ARITHMETIC_IS_BROKEN");`,
    "});",
    "",
  ].join("\n");

const check = (r: SweepResult, name: string) => r.checks.find((c) => c.name === name);

/** A shell command that exits 0 when a TCP connection to the host's loopback `port` succeeds, else 1. */
const connect = (port: number) =>
  `node -e 'require("net").connect(${port}, "127.0.0.1").on("connect", () => process.exit(0)).on("error", () => process.exit(1))'`;

// Sweeps through the real local (bubblewrap) provider: the checks run in a sandbox on a checkout of the swept
// sha, never on the host.
describe("sweep", () => {
  let root: string;
  /** Where this file's sandboxes live, so leftovers can be counted without racing other files. */
  let sandboxes: string;
  let provider: SandboxProvider;
  let tcp: Server;
  let tcpPort: number;
  let n = 0;
  const log = createLogger({ service: "sweep-test", level: process.env.LOG_LEVEL ?? "silent" });

  const sweep = (
    repo: string,
    base: string,
    overrides: CheckOverrides,
    timeoutMs: number,
    installNetwork = false,
  ) => createSweeper({ provider, overrides, timeoutMs, installNetwork })(repo, base);

  /** A new target repository with `files` committed on `main`; returns its path and head. */
  async function repo(files: Record<string, string>): Promise<{ path: string; head: string }> {
    const path = join(root, `repo-${++n}`);
    return { path, head: await makeRepo(path, files) };
  }

  const leftovers = async () => (await readdir(sandboxes)).filter((e) => e.startsWith("longshot-sandbox-"));

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "longshot-sweep-test-"));
    await chmod(root, 0o711);
    sandboxes = join(root, "sandboxes");
    await mkdir(sandboxes, { mode: 0o711 });
    provider = createSandboxProvider({
      backend: createLocalBackend({ isolation: "bwrap", tmpRoot: sandboxes, log }),
      mirrors: createMirrors(join(root, "mirrors")),
      log,
      limits: { memoryMb: 1024, pidsMax: 256 },
    });
    tcp = createServer((s) => s.destroy());
    await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
    tcpPort = (tcp.address() as { port: number }).port;
  });

  afterEach(async () => {
    // The sandbox is removed after every sweep, whatever its outcome.
    await waitFor(async () => (await leftovers()).length === 0, 10_000);
  });

  afterAll(async () => {
    await new Promise<void>((r) => tcp.close(() => r()));
    await rm(root, { recursive: true, force: true });
  });

  it("given a repo whose npm test passes, then green with an ok test check and an ok conflict-marker check", async () => {
    const { path, head } = await repo({ "package.json": PACKAGE_JSON, "test/a.test.ts": testFile(2) });
    const r = await sweep(path, "main", {}, TIMEOUT_MS);
    expect(r.sha).toBe(head);
    expect(r.green).toBe(true);
    expect(r.conflictFiles).toEqual([]);
    expect(r.checks.map((c) => c.name)).toEqual(["test", "conflict-markers"]);
    expect(check(r, "test")).toMatchObject({ ok: true, exitCode: 0, command: "npm run test" });
    // node --test really ran the file (a child that inherits NODE_TEST_CONTEXT would run nothing)
    expect(check(r, "test")?.output).toMatch(/\bpass 1\b/);
    expect(check(r, "conflict-markers")).toMatchObject({ ok: true, exitCode: 0 });
  });

  it("given a failing test, then red, the test check is not ok and its output holds the failure", async () => {
    const { path } = await repo({ "package.json": PACKAGE_JSON, "test/a.test.ts": testFile(3) });
    const r = await sweep(path, "main", {}, TIMEOUT_MS);
    expect(r.green).toBe(false);
    const t = check(r, "test")!;
    expect(t.ok).toBe(false);
    expect(t.exitCode).not.toBe(0);
    expect(t.output).toContain("SWEEP_MARKER_ARITHMETIC_IS_BROKEN");
    expect(t.output.length).toBeLessThanOrEqual(4000);
    expect(check(r, "conflict-markers")?.ok).toBe(true);
  });

  it("given the reconciler itself runs under a node test runner (NODE_TEST_CONTEXT set), then the target's tests still run", async () => {
    const { path } = await repo({ "package.json": PACKAGE_JSON, "test/a.test.ts": testFile(3) });
    process.env.NODE_TEST_CONTEXT = "child-v8";
    try {
      const r = await sweep(path, "main", {}, TIMEOUT_MS);
      expect(r.green).toBe(false);
      expect(check(r, "test")?.output).toContain("SWEEP_MARKER_ARITHMETIC_IS_BROKEN");
    } finally {
      delete process.env.NODE_TEST_CONTEXT;
    }
  });

  it("given a tracked file with conflict markers, then red and the file is in conflictFiles", async () => {
    const { path } = await repo({
      "README.md": "# target\n",
      "src/merged.ts": "<<<<<<< HEAD\nexport const a = 1;\n=======\nexport const a = 2;\n>>>>>>> x\n",
    });
    const r = await sweep(path, "main", {}, TIMEOUT_MS);
    expect(r.green).toBe(false);
    expect(r.conflictFiles).toEqual(["src/merged.ts"]);
    expect(r.checks).toHaveLength(1);
    expect(check(r, "conflict-markers")).toMatchObject({ ok: false, exitCode: 1, output: "src/merged.ts" });
  });

  it("given no package.json and a test command override, then that command is the test check (exit 3 → red)", async () => {
    const { path } = await repo({ "README.md": "# no package\n" });
    const r = await sweep(path, "main", { test: "exit 3" }, TIMEOUT_MS);
    expect(r.green).toBe(false);
    expect(r.checks.map((c) => c.name)).toEqual(["test", "conflict-markers"]);
    expect(check(r, "test")).toMatchObject({ command: "exit 3", ok: false, exitCode: 3 });
    expect(check(r, "conflict-markers")?.ok).toBe(true);
  });

  it("given a check that outlives the timeout, then it is killed and reported not ok", async () => {
    const { path } = await repo({ "README.md": "# slow\n" });
    const r = await sweep(path, "main", { test: "sleep 30" }, 300);
    expect(r.green).toBe(false);
    const t = check(r, "test")!;
    expect(t.ok).toBe(false);
    expect(t.output).toContain("timed out after 300 ms");
    expect(t.durationMs).toBeLessThan(10_000);
  });

  it("given secrets and NATS access in the environment, then checks see neither, nor the network", async () => {
    const { path } = await repo({ "README.md": "# env\n" });
    const saved = { LLM_API_KEY: process.env.LLM_API_KEY, NATS_URL: process.env.NATS_URL };
    process.env.LLM_API_KEY = "sk-should-not-leak";
    process.env.NATS_URL = "nats://127.0.0.1:1";
    try {
      const r = await sweep(
        path,
        "main",
        {
          test: `test -z "$LLM_API_KEY" && test -z "$NATS_URL" && test "$CI" = true && ! ${connect(tcpPort)}`,
        },
        TIMEOUT_MS,
      );
      expect(check(r, "test")).toMatchObject({ ok: true, exitCode: 0 });
      expect(r.green).toBe(true);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it("given an install that needs the network, then it gets it only where allowed, and tests never do", async () => {
    const { path } = await repo({
      "package.json": JSON.stringify({ name: "net", private: true, dependencies: { x: "1.0.0" } }),
    });
    const probe = connect(tcpPort);
    const overrides = { install: probe, test: `! ${probe}` };
    const allowed = await sweep(path, "main", overrides, TIMEOUT_MS, true);
    expect(allowed.checks.map((c) => [c.name, c.ok])).toEqual([
      ["install", true],
      ["test", true],
      ["conflict-markers", true],
    ]);
    const denied = await sweep(path, "main", overrides, TIMEOUT_MS, false);
    // A failing install ends the checks.
    expect(denied.checks.map((c) => [c.name, c.ok])).toEqual([
      ["install", false],
      ["conflict-markers", true],
    ]);
  });

  it("given a branch that does not exist, then sweep rejects and leaves no sandbox", async () => {
    const { path } = await repo({ "README.md": "# x\n" });
    await expect(sweep(path, "no-such-branch", {}, TIMEOUT_MS)).rejects.toThrow();
  });
});
