import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Handoff, HandoffStatus } from "@longshot/contracts";
import {
  checkoutNewBranch,
  cloneRepo,
  commitAll,
  headSha,
  initRepo,
  isAncestor,
  type MergeStrategy,
  pushBase,
  pushBranch,
} from "@longshot/git";
import { createLogger } from "@longshot/log";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createMergeRunner,
  MergeContentionError,
  type MergeRunnerOptions,
} from "../src/adapters/merge-runner.ts";
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
): Promise<Handoff> {
  const dir = join(root, `worker-${++workerCount}`);
  await cloneRepo(target, dir);
  const branch = `worker/${taskId}`;
  await checkoutNewBranch(dir, branch, "origin/main");
  const files = edit(await readFile(join(dir, "shared.txt"), "utf8"));
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

function runner(overrides: Partial<Omit<MergeRunnerOptions, "records">> & { records?: MemoryRecords } = {}) {
  const records = overrides.records ?? createMemoryMergedRecords();
  return {
    records,
    runner: createMergeRunner({
      stateDir: join(root, "state"),
      strategy: "rebase",
      log,
      ...overrides,
      records,
    }),
  };
}

/** The invariant of every scenario: main only ever moved forward. */
async function expectMainOnlyGrew(): Promise<void> {
  expect(await isAncestor(target, initialMain, await headSha(target, "main"))).toBe(true);
}

describe("merge runner", () => {
  it("lands two handoffs editing different regions of the same file, the second rebased", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 2, "from t1") }));
    const h2 = await work("t2", (s) => ({ "shared.txt": editLine(s, 19, "from t2") }));
    const { runner: r, records } = runner();

    const first = await r.merge(h1);
    expect(first).toEqual({ kind: "merged", sha: h1.head, rebased: false, attempts: 1, strategy: "rebase" });
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
      reason: expect.stringMatching(/head/),
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
    const again = createMergeRunner({ stateDir: join(root, "state"), strategy: "rebase", log, records });
    expect(await again.merge(h1)).toMatchObject({ kind: "merged", rebased: true });
  });

  it("fast-forward strategy: lands directly when possible, falls back to rebase when main moved", async () => {
    const h1 = await work("t1", (s) => ({ "shared.txt": editLine(s, 2, "from t1") }));
    const h2 = await work("t2", (s) => ({ "shared.txt": editLine(s, 19, "from t2") }));
    const { runner: r } = runner({ strategy: "fast-forward" satisfies MergeStrategy });
    expect(await r.merge(h1)).toEqual({
      kind: "merged",
      sha: h1.head,
      rebased: false,
      attempts: 1,
      strategy: "fast-forward",
    });
    expect(await r.merge(h2)).toMatchObject({
      kind: "merged",
      rebased: true,
      attempts: 2,
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
      head: initialMain.replace(/^./, "f"),
      branch: "worker/ghost",
    });
    expect(await r.merge(ghost)).toMatchObject({
      kind: "failed",
      reason: expect.stringMatching(/not found/),
    });
    await expectMainOnlyGrew();
  });
});
