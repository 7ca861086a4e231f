import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Handoff, HandoffStatus } from "@longshot/contracts";
import {
  checkoutNewBranch,
  cloneRepo,
  commitAll,
  createMirrors,
  headSha,
  initRepo,
  isAncestor,
  type MergeStrategy,
  pushBase,
  pushBranch,
} from "@longshot/git";
import { createLogger } from "@longshot/log";
import { createLocalBackend, createSandboxProvider, type SandboxProvider } from "@longshot/sandbox";
import { processesWith } from "@longshot/testkit";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createMergeQueue,
  MergeContentionError,
  type MergeQueueOptions,
} from "../src/adapters/merge-queue.ts";
import { createMemoryMergedRecords } from "../src/adapters/merged-records.ts";
import { makeHandoff } from "./fixtures.ts";

type MemoryRecords = ReturnType<typeof createMemoryMergedRecords>;

const log = createLogger({ service: "merger-test", level: "silent" });
let root: string;
let target: string;
let initialMain: string;
let workerCount = 0;

beforeAll(() => {
  process.env.GIT_CONFIG_GLOBAL = "/dev/null";
  process.env.GIT_CONFIG_NOSYSTEM = "1";
});

const lines = (n: number): string => `${Array.from({ length: n }, (_, i) => `line ${i + 1}`).join("\n")}\n`;
const editLine = (content: string, lineNo: number, text: string): string => {
  const all = content.split("\n");
  all[lineNo - 1] = text;
  return all.join("\n");
};

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "longshot-merger-"));
  // A developer's non-bare checkout with main checked out: the hardest kind of target to push to.
  target = join(root, "target");
  await initRepo(target, { branch: "main" });
  await writeFile(join(target, "shared.txt"), lines(20));
  initialMain = (await commitAll(target, "initial"))!;
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function countCommits(dir: string, ref = "main"): number {
  return Number(execFileSync("git", ["rev-list", "--count", ref], { cwd: dir, encoding: "utf8" }).trim());
}

/** Simulates a worker: branch from the target's current main, edit, commit, push; returns its handoff. */
async function work(
  taskId: string,
  edit: (shared: string) => Record<string, string>,
  overrides: { status?: HandoffStatus; priority?: number } = {},
  commits = 1,
): Promise<Handoff> {
  const dir = join(root, `worker-${++workerCount}`);
  await cloneRepo(target, dir);
  const branch = `worker/${taskId}`;
  await checkoutNewBranch(dir, branch, "origin/main");
  const files = edit(await readFile(join(dir, "shared.txt"), "utf8"));
  // Several commits: the first ones write a draft of each file, the last one the content.
  for (let i = 1; i < commits; i++) {
    for (const path of Object.keys(files)) await writeFile(join(dir, path), `draft ${i}\n`);
    await commitAll(dir, `draft ${i} of ${taskId}`);
  }
  for (const [path, content] of Object.entries(files)) await writeFile(join(dir, path), content);
  const head = (await commitAll(dir, `work ${taskId}`))!;
  await pushBranch(dir, branch);
  return makeHandoff(taskId, { branch, head, repo: target, filesChanged: Object.keys(files), ...overrides });
}

/** Moves the target's main with an unrelated commit, as another merger or a person would. */
async function moveTarget(name: string): Promise<string> {
  const dir = join(root, `mover-${name}`);
  await cloneRepo(target, dir);
  await writeFile(join(dir, `${name}.txt`), `${name}\n`);
  await commitAll(dir, `unrelated ${name}`);
  const push = await pushBase(dir, "main");
  expect(push.ok).toBe(true);
  return headSha(dir);
}

/** The merge queue without verification (MERGE_VERIFY=off), as a runner of one handoff at a time. */
function runner(overrides: Partial<Omit<MergeQueueOptions, "records">> & { records?: MemoryRecords } = {}) {
  const records = overrides.records ?? createMemoryMergedRecords();
  const queue = createMergeQueue({
    stateDir: join(root, "state"),
    strategy: "rebase",
    log,
    ...overrides,
    records,
  });
  return {
    records,
    runner: { merge: (h: Handoff) => queue.submit(h), workDirFor: (repo: string) => queue.workDirFor(repo) },
  };
}

/** The invariant of every scenario: main only ever moved forward. */
async function expectMainOnlyGrew(): Promise<void> {
  expect(await isAncestor(target, initialMain, await headSha(target, "main"))).toBe(true);
}

describe("merge queue without verification", () => {
  it("lands two handoffs editing different regions of the same file, the second rebased", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 2, "from t1") }));
    const h2 = await work("t2", (s) => ({ "shared.txt": editLine(s, 19, "from t2") }));
    const { runner: r, records } = runner();

    const first = await r.merge(h1);
    expect(first).toMatchObject({
      kind: "merged",
      sha: h1.head,
      rebased: false,
      attempts: 1,
      strategy: "rebase",
      verified: false,
      batchSize: 1,
    });
    const mainAfterFirst = await headSha(target);
    const second = await r.merge(h2);
    expect(second).toMatchObject({ kind: "merged", rebased: true, attempts: 1, strategy: "rebase" });

    const main = await headSha(target);
    expect(second.kind === "merged" && second.sha).toBe(main);
    expect(await isAncestor(target, mainAfterFirst, main)).toBe(true);
    const shared = await readFile(join(target, "shared.txt"), "utf8");
    expect(shared).toContain("from t1");
    expect(shared).toContain("from t2");
    expect(records.entries.get("run-1.t1")).toBe(mainAfterFirst);
    expect(records.entries.get("run-1.t2")).toBe(main);
    expect(existsSync(r.workDirFor(target))).toBe(true);
    await expectMainOnlyGrew();
  });

  it("serializes concurrent merges into one repository", async () => {
    const handoffs = await Promise.all(
      [3, 9, 15].map((line, i) => work(`c${i}`, (s) => ({ "shared.txt": editLine(s, line, `from c${i}`) }))),
    );
    const { runner: r } = runner();
    const outcomes = await Promise.all(handoffs.map((h) => r.merge(h)));
    expect(outcomes.map((o) => o.kind)).toEqual(["merged", "merged", "merged"]);
    expect(countCommits(target)).toBe(4);
    const shared = await readFile(join(target, "shared.txt"), "utf8");
    for (const i of [0, 1, 2]) expect(shared).toContain(`from c${i}`);
    await expectMainOnlyGrew();
  });

  it("reports a true conflict after 3 attempts with the conflicting files, main untouched", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 7, "t1 wins") }));
    const h2 = await work("t2", (s) => ({
      "shared.txt": editLine(s, 7, "t2 disagrees"),
      "other.txt": "x\n",
    }));
    const { runner: r, records } = runner();
    expect((await r.merge(h1)).kind).toBe("merged");
    const mainAfterFirst = await headSha(target);

    const outcome = await r.merge(h2);
    expect(outcome).toEqual({ kind: "conflict", files: ["shared.txt"], attempts: 3 });
    expect(await headSha(target)).toBe(mainAfterFirst);
    expect(records.entries.has("run-1.t2")).toBe(false);
    await expectMainOnlyGrew();
  });

  it("skips a redelivered handoff without a second commit, also when the record store lost it", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 2, "from t1") }));
    const h2 = await work("t2", (s) => ({ "shared.txt": editLine(s, 19, "from t2") }));
    const { runner: r, records } = runner();
    expect((await r.merge(h1)).kind).toBe("merged");
    expect(await r.merge(h2)).toMatchObject({ kind: "merged", rebased: true });
    const main = await headSha(target);
    const commits = countCommits(target);

    // A redelivery reports the work as already merged, naming a base commit that contains it.
    expect(await r.merge(h1)).toMatchObject({
      kind: "already-merged",
      reason: expect.stringMatching(/already merged/),
    });
    expect(await r.merge(h2)).toMatchObject({ kind: "already-merged" });
    expect(records.entries.size).toBe(2);

    // A restarted merger whose record store is empty: git itself shows the work is already on main
    // (t1 by its head being an ancestor, t2 because its rebased patches are already upstream).
    const fresh = runner({ records: createMemoryMergedRecords() });
    expect(await fresh.runner.merge(h1)).toMatchObject({
      kind: "already-merged",
      sha: main,
      reason: expect.stringMatching(/already (contained|present|on)/),
    });
    expect(await fresh.runner.merge(h2)).toMatchObject({ kind: "already-merged", sha: main });
    expect(fresh.records.entries.get("run-1.t1")).toBe(main);
    expect(fresh.records.entries.get("run-1.t2")).toBe(main);

    expect(await headSha(target)).toBe(main);
    expect(countCommits(target)).toBe(commits);
    await expectMainOnlyGrew();
  });

  it("skips failed, blocked and empty handoffs without touching git", async () => {
    const failed = await work("t1", (s) => ({ "shared.txt": editLine(s, 1, "x") }), { status: "failed" });
    const blocked = await work("t2", (s) => ({ "shared.txt": editLine(s, 2, "y") }), { status: "blocked" });
    const { runner: r } = runner();
    expect(await r.merge(failed)).toEqual({ kind: "skipped", reason: "handoff status is failed" });
    expect(await r.merge(blocked)).toEqual({ kind: "skipped", reason: "handoff status is blocked" });
    expect(await r.merge({ ...failed, status: "complete", head: undefined })).toMatchObject({
      kind: "skipped",
    });
    expect(await r.merge({ ...failed, status: "complete", filesChanged: [] })).toMatchObject({
      kind: "skipped",
    });
    expect(existsSync(r.workDirFor(target))).toBe(false);
    expect(await headSha(target)).toBe(initialMain);
  });

  it("merges partial handoffs that pushed commits", async () => {
    const partial = await work("t1", (s) => ({ "shared.txt": editLine(s, 1, "half done") }), {
      status: "partial",
    });
    const { runner: r } = runner();
    expect(await r.merge(partial)).toMatchObject({ kind: "merged" });
    expect(await headSha(target)).toBe(partial.head);
  });

  it("redoes the merge from the new tip when the push is rejected because main moved", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 2, "from t1") }));
    let moved = "";
    const { runner: r } = runner({
      beforePush: async ({ attempt }) => {
        if (attempt === 1) moved = await moveTarget("meanwhile");
      },
    });
    const outcome = await r.merge(h1);
    expect(outcome).toMatchObject({ kind: "merged", rebased: true, attempts: 2 });
    const main = await headSha(target);
    expect(await isAncestor(target, moved, main)).toBe(true);
    expect(await readFile(join(target, "meanwhile.txt"), "utf8")).toBe("meanwhile\n");
    expect(await readFile(join(target, "shared.txt"), "utf8")).toContain("from t1");
    await expectMainOnlyGrew();
  });

  it("gives up with a retryable error after 5 rejected pushes, never rewriting main", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 2, "from t1") }));
    const tips: string[] = [];
    const { runner: r, records } = runner({
      beforePush: async ({ attempt }) => {
        tips.push(await moveTarget(`m${attempt}`));
      },
    });
    const error = await r.merge(h1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MergeContentionError);
    expect((error as MergeContentionError).pushAttempts).toBe(5);
    expect(await headSha(target)).toBe(tips[4]);
    for (const tip of tips) expect(await isAncestor(target, tip, await headSha(target))).toBe(true);
    expect(records.entries.size).toBe(0);
    await expectMainOnlyGrew();

    // The redelivery (no more contention) lands it.
    const again = createMergeQueue({ stateDir: join(root, "state"), strategy: "rebase", log, records });
    expect(await again.submit(h1)).toMatchObject({ kind: "merged", rebased: true });
  });

  it("fast-forward strategy: lands directly when possible, falls back to rebase when main moved", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 2, "from t1") }));
    const h2 = await work("t2", (s) => ({ "shared.txt": editLine(s, 19, "from t2") }));
    const { runner: r } = runner({ strategy: "fast-forward" satisfies MergeStrategy });
    expect(await r.merge(h1)).toMatchObject({
      kind: "merged",
      sha: h1.head,
      rebased: false,
      attempts: 1,
      strategy: "fast-forward",
    });
    expect(await r.merge(h2)).toMatchObject({
      kind: "merged",
      rebased: true,
      attempts: 1,
      strategy: "rebase",
    });
    expect(execFileSync("git", ["rev-list", "--merges", "main"], { cwd: target, encoding: "utf8" })).toBe("");
    await expectMainOnlyGrew();
  });

  it("merge-commit strategy: lands both with merge commits", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 2, "from t1") }));
    const h2 = await work("t2", (s) => ({ "shared.txt": editLine(s, 19, "from t2") }));
    const { runner: r } = runner({ strategy: "merge-commit" });
    expect(await r.merge(h1)).toMatchObject({ kind: "merged", strategy: "merge-commit", rebased: false });
    expect(await r.merge(h2)).toMatchObject({ kind: "merged", strategy: "merge-commit", rebased: false });
    const merges = execFileSync("git", ["rev-list", "--merges", "main"], {
      cwd: target,
      encoding: "utf8",
    }).trim();
    expect(merges.split("\n")).toHaveLength(2);
    expect(await isAncestor(target, h1.head!, "main")).toBe(true);
    expect(await isAncestor(target, h2.head!, "main")).toBe(true);
    // A redelivery is caught by ancestry alone.
    const fresh = runner({ strategy: "merge-commit" });
    expect(await fresh.runner.merge(h2)).toMatchObject({ kind: "already-merged" });
    await expectMainOnlyGrew();
  });

  it("reports a missing branch as failed", async () => {
    const { runner: r } = runner();
    const ghost = makeHandoff("ghost", {
      repo: target,
      // A sha that is certainly not initialMain's: its first hex digit moved on by one (f wraps to 0).
      head: `${((Number.parseInt(initialMain[0]!, 16) + 1) % 16).toString(16)}${initialMain.slice(1)}`,
      branch: "worker/ghost",
    });
    expect(await r.merge(ghost)).toMatchObject({
      kind: "failed",
      reason: expect.stringMatching(/not found/),
    });
    await expectMainOnlyGrew();
  });
});

// With verification: the real local (bubblewrap) sandbox provider runs the target's check set (its package.json
// test script) on every candidate tree before it lands.
describe("merge queue with verification", () => {
  let sandboxes: string;
  let provider: SandboxProvider;
  const verified: Array<{ taskId: string; position: number; cached: boolean }> = [];

  /**
   * The check: when a task file says BROKEN it fails after `check-fail-ms` per task file (so a stack's bottom slot
   * fails first), else it passes after `check-delay-ms`.
   */
  const CHECK = [
    'import { readdirSync, readFileSync } from "node:fs";',
    'const wait = (file) => new Promise((r) => setTimeout(r, Number(readFileSync(file, "utf8"))));',
    'const files = readdirSync("tasks").filter((f) => f.endsWith(".txt"));',
    'const broken = files.filter((f) => readFileSync("tasks/" + f, "utf8").includes("BROKEN"));',
    "if (broken.length) {",
    '  for (const _ of files) await wait("check-fail-ms");',
    '  console.error("BROKEN_MARKER in " + broken.join(", "));',
    "  process.exit(1);",
    "}",
    'await wait("check-delay-ms");',
    'console.log("all tasks ok");',
    "",
  ].join("\n");

  beforeAll(async () => {
    sandboxes = await mkdtemp(join(tmpdir(), "longshot-merge-verify-"));
    await chmod(sandboxes, 0o711);
    provider = createSandboxProvider({
      backend: createLocalBackend({ isolation: "bwrap", tmpRoot: sandboxes, log }),
      mirrors: createMirrors(join(sandboxes, "mirrors")),
      log,
      limits: { memoryMb: 1024, pidsMax: 256 },
    });
  });

  afterAll(async () => {
    await rm(sandboxes, { recursive: true, force: true });
  });

  /** The target gets a test suite (the check above: `delayMs` per passing run, `failMs` per failing one). */
  async function withChecks(delayMs: number, failMs = 0): Promise<void> {
    await writeFile(
      join(target, "package.json"),
      JSON.stringify({ name: "t", private: true, type: "module", scripts: { test: "node check.mjs" } }),
    );
    await writeFile(join(target, "check.mjs"), CHECK);
    await writeFile(join(target, "check-delay-ms"), String(delayMs));
    await writeFile(join(target, "check-fail-ms"), String(failMs));
    await mkdir(join(target, "tasks"));
    await writeFile(join(target, "tasks", "README"), "one file per task\n");
    initialMain = (await commitAll(target, "checks"))!;
  }

  function verifyingQueue(depth: number, overrides: Partial<MergeQueueOptions> = {}) {
    const records = createMemoryMergedRecords();
    verified.length = 0;
    const queue = createMergeQueue({
      stateDir: join(root, "state"),
      strategy: "rebase",
      log,
      records,
      depth,
      verify: { provider, overrides: {}, timeoutMs: 60_000, installNetwork: false },
      onVerified: (h, v) => verified.push({ taskId: h.taskId, position: v.position, cached: v.cached }),
      ...overrides,
    });
    return { queue, records };
  }

  /** A task branch adding `tasks/<id>.txt` with `content`, in `commits` commits. */
  const task = (id: string, content: string, commits = 1) =>
    work(id, () => ({ [`tasks/${id}.txt`]: content }), {}, commits);

  /** Main's first-parent commits since the checks were added, oldest first. */
  const landedCommits = () =>
    execFileSync("git", ["rev-list", "--first-parent", "--reverse", `${initialMain}..main`], {
      cwd: target,
      encoding: "utf8",
    })
      .split("\n")
      .filter(Boolean);
  const brokenAt = (sha: string) =>
    execFileSync("git", ["grep", "-l", "BROKEN", sha, "--", "tasks"], {
      cwd: target,
      encoding: "utf8",
    }).trim();

  it("rejects the candidate that breaks the checks with their output; the others land and every commit on main is green", async () => {
    await withChecks(200);
    const handoffs = [await task("a", "ok\n"), await task("b", "BROKEN\n"), await task("c", "ok\n")];
    const { queue, records } = verifyingQueue(4);
    const [a, b, c] = await Promise.all(handoffs.map((h) => queue.submit(h)));
    expect(a).toMatchObject({ kind: "merged", verified: true });
    expect(c).toMatchObject({ kind: "merged", verified: true });
    expect(b).toMatchObject({ kind: "rejected", check: { name: "test", ok: false, exitCode: 1 } });
    if (b?.kind !== "rejected") throw new Error("b should be rejected");
    expect(b.check.output).toContain("BROKEN_MARKER in b.txt");
    expect(b.check.command).toBe("npm run test");
    expect(b.checks.map((x) => [x.name, x.ok])).toEqual([
      ["test", false],
      ["conflict-markers", true],
    ]);
    expect(records.entries.has("run-1.b")).toBe(false);

    const commits = landedCommits();
    expect(commits).toHaveLength(2);
    for (const sha of commits) expect(() => brokenAt(sha)).toThrow();
    expect(await readFile(join(target, "tasks", "c.txt"), "utf8")).toBe("ok\n");
    expect(existsSync(join(target, "tasks", "b.txt"))).toBe(false);
    expect(verified.map((v) => v.taskId)).toEqual(expect.arrayContaining(["a", "c"]));
    await expectMainOnlyGrew();
  });

  it("stacks candidates and verifies them all at once up to the depth, each landed commit one verified tree", async () => {
    await withChecks(1_500);
    const handoffs = [];
    for (const id of ["p1", "p2", "p3", "p4"]) handoffs.push(await task(id, "ok\n"));
    const { queue } = verifyingQueue(4);
    const outcomes = await Promise.all(handoffs.map((h) => queue.submit(h)));
    expect(outcomes.map((o) => o.kind)).toEqual(["merged", "merged", "merged", "merged"]);
    const stats = queue.stats();
    expect(stats.maxVerifying).toBe(4);
    expect(stats.verifications).toBe(4);
    expect(stats.landed).toBe(4);
    // Linear: each landed candidate's commit is the next first-parent commit of main, with its verified tree.
    const commits = landedCommits();
    expect(commits).toEqual(outcomes.map((o) => (o.kind === "merged" ? o.sha : "")));
    for (const o of outcomes) {
      if (o.kind !== "merged") continue;
      expect(
        execFileSync("git", ["rev-parse", `${o.sha}^{tree}`], { cwd: target, encoding: "utf8" }).trim(),
      ).toBe(o.tree);
    }
    expect(outcomes.reduce((n, o) => n + (o.kind === "merged" ? 1 / o.batchSize : 0), 0)).toBeCloseTo(
      stats.pushes,
    );
    expect(
      verified
        .filter((v) => !v.cached)
        .map((v) => v.position)
        .sort(),
    ).toEqual([1, 2, 3, 4]);
  });

  it("aborts the verifications stacked on a culprit and verifies those candidates again without it", async () => {
    // The culprit's tree fails after 2 s (the three are stacked by then, even on a loaded machine); the slots
    // above it contain it and would fail after 4 and 6 s; without it they pass after 6 s.
    await withChecks(6_000, 2_000);
    const handoffs = [await task("x", "BROKEN\n"), await task("y", "ok\n"), await task("z", "ok\n")];
    const { queue } = verifyingQueue(3);
    const [x, y, z] = await Promise.all(handoffs.map((h) => queue.submit(h)));
    expect(x).toMatchObject({ kind: "rejected", stackSize: 3, bisectionDepth: 0 });
    expect(y).toMatchObject({ kind: "merged", attempts: 2 });
    expect(z).toMatchObject({ kind: "merged", attempts: 2 });
    const stats = queue.stats();
    expect(stats.verificationsAborted).toBe(2);
    expect(stats.verifications).toBe(5);
    expect(await processesWith("check.mjs")).toEqual([]);
    expect(landedCommits()).toHaveLength(2);
  });

  it("does not verify a tree again: a landing refused by the target goes through on redelivery from the cache", async () => {
    await withChecks(100);
    const h = await task("k", "ok\n");
    const { queue } = verifyingQueue(2);
    // A person's uncommitted edit in the target's checkout: git refuses to update it.
    await writeFile(join(target, "check-delay-ms"), "999");
    await expect(queue.submit(h)).rejects.toThrow(/refused|rejected|unstaged|working/i);
    expect(queue.stats().verifications).toBe(1);
    execFileSync("git", ["checkout", "--", "check-delay-ms"], { cwd: target });
    const again = await queue.submit(h);
    expect(again).toMatchObject({ kind: "merged", verified: true, verifyMs: 0 });
    expect(queue.stats()).toMatchObject({ verifications: 1, cacheHits: 1 });
    expect(verified.map((v) => v.cached)).toEqual([false, true]);
  });

  it("lands a branch of several commits as one verified commit (squashed)", async () => {
    await withChecks(100);
    const h = await task("m", "ok\n", 3);
    const { queue } = verifyingQueue(2);
    const o = await queue.submit(h);
    expect(o).toMatchObject({ kind: "merged", verified: true });
    expect(landedCommits()).toHaveLength(1);
    expect(execFileSync("git", ["rev-parse", "main^{tree}"], { cwd: target, encoding: "utf8" }).trim()).toBe(
      execFileSync("git", ["rev-parse", `${h.head}^{tree}`], { cwd: target, encoding: "utf8" }).trim(),
    );
  });
});
