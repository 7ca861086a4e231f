import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeRepo } from "@longshot/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { checkEnv, type SweepResult, sweep } from "../src/adapters/sweep.ts";

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

describe("sweep", () => {
  let root: string;
  /** A private os.tmpdir() for this file, so leftover scratch clones can be counted without racing other files. */
  let scratchTmp: string;
  const savedTmp = process.env.TMPDIR;
  let n = 0;

  /** A new target repository with `files` committed on `main`; returns its path and head. */
  async function repo(files: Record<string, string>): Promise<{ path: string; head: string }> {
    const path = join(root, `repo-${++n}`);
    return { path, head: await makeRepo(path, files) };
  }

  const leftovers = async () => (await readdir(scratchTmp)).filter((e) => e.startsWith("longshot-sweep-"));

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "longshot-sweep-test-"));
    scratchTmp = await mkdtemp(join(tmpdir(), "longshot-sweep-tmp-"));
    process.env.TMPDIR = scratchTmp;
  });

  afterEach(async () => {
    // The scratch clone is removed after every sweep, whatever its outcome.
    expect(await leftovers()).toEqual([]);
  });

  afterAll(async () => {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    await rm(root, { recursive: true, force: true });
    await rm(scratchTmp, { recursive: true, force: true });
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

  it("given the sweep itself runs under a node test runner (NODE_TEST_CONTEXT set), then the target's tests still run", async () => {
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

  it("given secrets and NATS access in the environment, then checks do not see them", async () => {
    const { path } = await repo({ "README.md": "# env\n" });
    const saved = { LLM_API_KEY: process.env.LLM_API_KEY, NATS_URL: process.env.NATS_URL };
    process.env.LLM_API_KEY = "sk-should-not-leak";
    process.env.NATS_URL = "nats://127.0.0.1:1";
    try {
      const r = await sweep(
        path,
        "main",
        { test: 'test -z "$LLM_API_KEY" && test -z "$NATS_URL" && test "$CI" = true' },
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
    expect(
      Object.keys(checkEnv({ PATH: "/bin", GH_TOKEN: "t", NATS_CREDS: "c", NODE_TEST_CONTEXT: "x" })),
    ).toEqual(["PATH", "CI"]);
  });

  it("given a branch that does not exist, then sweep rejects and still removes its scratch clone", async () => {
    const { path } = await repo({ "README.md": "# x\n" });
    await expect(sweep(path, "no-such-branch", {}, TIMEOUT_MS)).rejects.toThrow();
  });
});
