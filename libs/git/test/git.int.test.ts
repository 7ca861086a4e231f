import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  branchExists,
  checkoutNewBranch,
  cloneRepo,
  commitAll,
  currentBranch,
  diffStats,
  findConflictMarkers,
  GitPushError,
  GitRefNotFoundError,
  GitUsageError,
  headSha,
  initRepo,
  isAncestor,
  isArtifactPath,
  listTrackedFiles,
  type MergeStrategy,
  mergeBranch,
  prepareTargetRepo,
  pushBase,
  pushBranch,
  recentCommits,
} from "../src/index.ts";

let root: string;

beforeAll(() => {
  // Isolate from the machine's global/system git config (signing, hooks, default branch, identity).
  process.env.GIT_CONFIG_GLOBAL = "/dev/null";
  process.env.GIT_CONFIG_NOSYSTEM = "1";
});

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "longshot-git-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Plain git for assertions only. */
function gitOut(dir: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd: dir, encoding: "utf8" }).trim();
}

async function writeFiles(dir: string, files: Record<string, string | Buffer | null>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const full = join(dir, path);
    if (content === null) {
      await rm(full, { force: true });
      continue;
    }
    mkdirSync(dirname(full), { recursive: true });
    await writeFile(full, content);
  }
}

const lines = (n: number, tag = "line"): string =>
  `${Array.from({ length: n }, (_, i) => `${tag} ${i + 1}`).join("\n")}\n`;

/** A non-bare target repository (a developer checkout) with `main` checked out. */
async function makeTarget(
  files: Record<string, string> = { "shared.txt": lines(20), "README.md": "# demo\n" },
) {
  const target = join(root, "target");
  await initRepo(target, { branch: "main" });
  await writeFiles(target, files);
  await commitAll(target, "initial");
  await prepareTargetRepo(target);
  return target;
}

/** Simulates a worker: clone, branch from origin/main, edit, commit, push. Returns the branch head. */
async function workerBranch(
  target: string,
  branch: string,
  edits: Record<string, string | null>,
): Promise<string> {
  const dir = join(root, `worker-${branch.replace(/\//g, "-")}`);
  await cloneRepo(target, dir);
  await checkoutNewBranch(dir, branch, "origin/main");
  await writeFiles(dir, edits);
  const sha = await commitAll(dir, `work on ${branch}`);
  expect(sha).not.toBeNull();
  await pushBranch(dir, branch);
  return sha!;
}

const editLine = (content: string, lineNo: number, text: string): string => {
  const all = content.split("\n");
  all[lineNo - 1] = text;
  return all.join("\n");
};

async function mergerClone(target: string): Promise<string> {
  const dir = join(root, "merger");
  await cloneRepo(target, dir);
  return dir;
}

describe("basic operations", () => {
  it("commits everything incl. deletions, returns null when nothing changed, lists files and commits", async () => {
    const target = await makeTarget({ "a.txt": "a\n", "b.txt": "b\n" });
    expect(await currentBranch(target)).toBe("main");
    expect(await commitAll(target, "nothing")).toBeNull();

    await writeFiles(target, { "a.txt": null, "c/d.txt": "d\n" });
    const sha = await commitAll(target, "delete a, add c/d");
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    expect(await headSha(target)).toBe(sha);
    expect((await listTrackedFiles(target)).sort()).toEqual(["b.txt", "c/d.txt"]);

    const commits = await recentCommits(target, 5);
    expect(commits.map((c) => c.subject)).toEqual(["delete a, add c/d", "initial"]);
    expect(commits[0]).toEqual({ sha, subject: "delete a, add c/d", author: "Longshot" });
    expect(gitOut(target, "log", "-1", "--format=%ae")).toBe("longshot@localhost");
    // Identity is per command, never in config.
    expect(() => gitOut(target, "config", "--local", "user.name")).toThrow();
  });

  it("answers ancestry, branch existence and ref lookups", async () => {
    const target = await makeTarget();
    const first = await headSha(target);
    await writeFiles(target, { "x.txt": "x\n" });
    const second = (await commitAll(target, "x"))!;
    expect(await isAncestor(target, first, second)).toBe(true);
    expect(await isAncestor(target, second, first)).toBe(false);
    expect(await branchExists(target, "main")).toBe(true);
    expect(await branchExists(target, "nope")).toBe(false);
    const clone = await mergerClone(target);
    expect(await branchExists(clone, "origin/main")).toBe(true);
    await expect(headSha(target, "does-not-exist")).rejects.toBeInstanceOf(GitRefNotFoundError);
    expect(await recentCommits(join(root, "empty"), 3).catch(() => "error")).toBe("error");
    await initRepo(join(root, "empty"));
    expect(await recentCommits(join(root, "empty"), 3)).toEqual([]);
  });

  it("refuses to force-push a base branch but force-pushes task branches", async () => {
    const target = await makeTarget();
    const dir = join(root, "w");
    await cloneRepo(target, dir);
    await expect(pushBranch(dir, "main", { force: true })).rejects.toBeInstanceOf(GitUsageError);
    await expect(pushBranch(dir, "develop", { force: true, base: "develop" })).rejects.toBeInstanceOf(
      GitUsageError,
    );

    await checkoutNewBranch(dir, "task/a", "origin/main");
    await writeFiles(dir, { "a.txt": "1\n" });
    await commitAll(dir, "a1");
    await pushBranch(dir, "task/a");
    execFileSync("git", ["reset", "-q", "--hard", "HEAD~1"], { cwd: dir });
    await writeFiles(dir, { "a.txt": "2\n" });
    const rewritten = await commitAll(dir, "a2");
    const err = await pushBranch(dir, "task/a").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitPushError);
    expect((err as GitPushError).rejected).toBe(true);
    await pushBranch(dir, "task/a", { force: true });
    expect(gitOut(target, "rev-parse", "task/a")).toBe(rewritten);
  });
});

describe("diffStats", () => {
  it("counts created, modified and deleted files and lines, excluding artifacts", async () => {
    const target = await makeTarget({ "src/a.ts": "a\nb\nc\n", "src/old.ts": "old\n", "README.md": "r\n" });
    const from = await headSha(target);
    await writeFiles(target, {
      "src/a.ts": "a\nB\nc\nd\n",
      "src/old.ts": null,
      "src/new.ts": "n1\nn2\n",
      "img.bin": Buffer.from([0, 1, 2, 0, 255]),
      "node_modules/x/index.js": "x\n",
      "packages/p/dist/out.js": "o\n",
      "pnpm-lock.yaml": "lock\n",
      "tsconfig.tsbuildinfo": "{}\n",
    });
    await commitAll(target, "changes");
    const stats = await diffStats(target, from);
    expect(stats.filesChanged.sort()).toEqual(["img.bin", "src/a.ts", "src/new.ts", "src/old.ts"]);
    expect(stats.filesCreated).toBe(2);
    expect(stats.filesModified).toBe(2);
    expect(stats.linesAdded).toBe(2 + 2);
    expect(stats.linesRemoved).toBe(1 + 1);
  });

  it("classifies artifact paths", () => {
    expect(isArtifactPath("node_modules/a/b.js")).toBe(true);
    expect(isArtifactPath("apps/web/.next/x.js")).toBe(true);
    expect(isArtifactPath("yarn.lock")).toBe(true);
    expect(isArtifactPath("src/dist.ts")).toBe(false);
    expect(isArtifactPath("src/build/readme.md")).toBe(true);
    expect(isArtifactPath("src/builder.ts")).toBe(false);
  });
});

describe("findConflictMarkers", () => {
  it("finds tracked text files with marker lines, skipping binary, untracked and mid-line markers", async () => {
    const target = await makeTarget({
      "a.ts": "ok\n<<<<<<< HEAD\nx\n=======\ny\n>>>>>>> branch\n",
      "b.weird-ext": "fine\n>>>>>>> theirs\n",
      "c.md": "text mentions <<<<<<< HEAD inline\n",
      "d.txt": "<<<<<<<no-space\n",
    });
    await writeFile(
      join(target, "bin.dat"),
      Buffer.concat([Buffer.from("<<<<<<< HEAD\n"), Buffer.from([0, 0, 1])]),
    );
    await commitAll(target, "binary");
    await writeFile(join(target, "untracked.ts"), "<<<<<<< HEAD\n");
    expect((await findConflictMarkers(target)).sort()).toEqual(["a.ts", "b.weird-ext"]);
  });

  it("returns [] for a clean tree", async () => {
    const target = await makeTarget();
    expect(await findConflictMarkers(target)).toEqual([]);
  });
});

describe("prepareTargetRepo", () => {
  it("lets a push of the checked-out base branch update a non-bare target's working tree", async () => {
    const target = join(root, "plain");
    await initRepo(target);
    await writeFiles(target, { "f.txt": "v1\n" });
    await commitAll(target, "v1");
    const clone = join(root, "c");
    await cloneRepo(target, clone);
    await writeFiles(clone, { "f.txt": "v2\n" });
    const v2 = await commitAll(clone, "v2");

    // Without preparation git refuses to update the checked-out branch.
    const refused = await pushBase(clone, "main").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(GitPushError);
    expect((refused as GitPushError).rejected).toBe(false);

    expect(await prepareTargetRepo(target)).toBe("configured");
    expect(gitOut(target, "config", "--local", "receive.denyCurrentBranch")).toBe("updateInstead");
    expect(await pushBase(clone, "main")).toEqual({ ok: true });
    expect(await headSha(target)).toBe(v2);
    expect(await readFile(join(target, "f.txt"), "utf8")).toBe("v2\n");
    expect(gitOut(target, "status", "--porcelain")).toBe("");
  });

  it("leaves bare repositories and URLs alone", async () => {
    const bare = join(root, "bare.git");
    await initRepo(bare, { bare: true });
    expect(await prepareTargetRepo(bare)).toBe("bare");
    expect(() => gitOut(bare, "config", "--local", "receive.denyCurrentBranch")).toThrow();
    expect(await prepareTargetRepo("https://example.invalid/org/repo.git")).toBe("remote");
    expect(await prepareTargetRepo("git@example.invalid:org/repo.git")).toBe("remote");
  });
});

describe("mergeBranch", () => {
  it("fast-forward: lands a branch based on the tip, fails (not conflict) when not possible", async () => {
    const target = await makeTarget();
    const oldMain = await headSha(target);
    const a = await workerBranch(target, "task/a", { "a.txt": "a\n" });
    const b = await workerBranch(target, "task/b", { "b.txt": "b\n" });
    const merger = await mergerClone(target);

    const first = await mergeBranch(merger, {
      branch: "task/a",
      base: "main",
      strategy: "fast-forward",
      message: "m",
    });
    expect(first).toEqual({ kind: "merged", sha: a, rebased: false });
    expect(await pushBase(merger, "main")).toEqual({ ok: true });
    expect(await headSha(target)).toBe(a);
    expect(await readFile(join(target, "a.txt"), "utf8")).toBe("a\n");

    const second = await mergeBranch(merger, {
      branch: "task/b",
      base: "main",
      strategy: "fast-forward",
      message: "m",
    });
    expect(second).toMatchObject({ kind: "failed", code: "not-fast-forward" });
    expect(await headSha(target)).toBe(a);
    expect(await headSha(merger, "main")).toBe(a);
    expect(b).not.toBe(a);
    expect(await isAncestor(target, oldMain, await headSha(target))).toBe(true);
  });

  it("rebase: two branches editing different regions of one file both land, the second rebased", async () => {
    const target = await makeTarget();
    const base = await readFile(join(target, "shared.txt"), "utf8");
    const oldMain = await headSha(target);
    const a = await workerBranch(target, "task/a", { "shared.txt": editLine(base, 2, "A was here") });
    const b = await workerBranch(target, "task/b", { "shared.txt": editLine(base, 18, "B was here") });
    const merger = await mergerClone(target);

    const first = await mergeBranch(merger, {
      branch: "task/a",
      base: "main",
      strategy: "rebase",
      message: "m",
    });
    expect(first).toEqual({ kind: "merged", sha: a, rebased: false });
    expect(await pushBase(merger, "main")).toEqual({ ok: true });

    const second = await mergeBranch(merger, {
      branch: "task/b",
      base: "main",
      strategy: "rebase",
      message: "m",
    });
    expect(second.kind).toBe("merged");
    if (second.kind !== "merged") return;
    expect(second.rebased).toBe(true);
    expect(second.sha).not.toBe(b);
    expect(await pushBase(merger, "main")).toEqual({ ok: true });

    const content = await readFile(join(target, "shared.txt"), "utf8");
    expect(content).toContain("A was here");
    expect(content).toContain("B was here");
    expect(await headSha(target)).toBe(second.sha);
    expect(await isAncestor(target, oldMain, a)).toBe(true);
    expect(await isAncestor(target, a, second.sha)).toBe(true);
    // Linear history: no merge commits.
    expect(gitOut(target, "rev-list", "--merges", "main")).toBe("");
    expect(await currentBranch(merger)).toBe("main");
    expect(gitOut(merger, "branch", "--list", "longshot-merge-tmp")).toBe("");
  });

  it("merge-commit: lands with a two-parent merge commit carrying the message", async () => {
    const target = await makeTarget();
    const oldMain = await headSha(target);
    const a = await workerBranch(target, "task/a", { "a.txt": "a\n" });
    const merger = await mergerClone(target);
    const result = await mergeBranch(merger, {
      branch: "task/a",
      base: "main",
      strategy: "merge-commit",
      message: "Merge task a",
    });
    expect(result.kind).toBe("merged");
    if (result.kind !== "merged") return;
    expect(result.rebased).toBe(false);
    expect(gitOut(merger, "rev-list", "--parents", "-n1", result.sha).split(" ")).toEqual([
      result.sha,
      oldMain,
      a,
    ]);
    expect(gitOut(merger, "log", "-1", "--format=%s", result.sha)).toBe("Merge task a");
    expect(await pushBase(merger, "main")).toEqual({ ok: true });
    expect(await headSha(target)).toBe(result.sha);
  });

  for (const strategy of ["rebase", "merge-commit"] satisfies MergeStrategy[]) {
    it(`${strategy}: a real conflict reports the file and leaves the work tree clean on origin's base`, async () => {
      const target = await makeTarget();
      const base = await readFile(join(target, "shared.txt"), "utf8");
      await workerBranch(target, "task/a", {
        "shared.txt": editLine(base, 5, "A's version"),
        "a.txt": "a\n",
      });
      await workerBranch(target, "task/b", {
        "shared.txt": editLine(base, 5, "B's version"),
        "b.txt": "b\n",
      });
      const merger = await mergerClone(target);
      const first = await mergeBranch(merger, { branch: "task/a", base: "main", strategy, message: "m" });
      expect(first.kind).toBe("merged");
      expect(await pushBase(merger, "main")).toEqual({ ok: true });
      const mainAfterA = await headSha(target);

      const second = await mergeBranch(merger, { branch: "task/b", base: "main", strategy, message: "m" });
      expect(second).toEqual({ kind: "conflict", files: ["shared.txt"] });
      expect(gitOut(merger, "status", "--porcelain", "--untracked-files=all")).toBe("");
      expect(await currentBranch(merger)).toBe("main");
      expect(await headSha(merger)).toBe(mainAfterA);
      expect(await headSha(target)).toBe(mainAfterA);

      // The clone is reusable afterwards.
      await workerBranch(target, "task/c", { "c.txt": "c\n" });
      const third = await mergeBranch(merger, { branch: "task/c", base: "main", strategy, message: "m" });
      expect(third.kind).toBe("merged");
    });
  }

  it("noop for an already merged branch (also when landed by rebase), failed for a missing branch", async () => {
    const target = await makeTarget();
    await workerBranch(target, "task/a", { "a.txt": "a\n" });
    await workerBranch(target, "task/b", { "b.txt": "b\n" });
    const merger = await mergerClone(target);
    expect(
      (await mergeBranch(merger, { branch: "task/a", base: "main", strategy: "rebase", message: "m" })).kind,
    ).toBe("merged");
    await pushBase(merger, "main");
    const b = await mergeBranch(merger, { branch: "task/b", base: "main", strategy: "rebase", message: "m" });
    expect(b).toMatchObject({ kind: "merged", rebased: true });
    await pushBase(merger, "main");
    const tip = await headSha(target);

    for (const strategy of ["rebase", "fast-forward", "merge-commit"] satisfies MergeStrategy[]) {
      const again = await mergeBranch(merger, { branch: "task/a", base: "main", strategy, message: "m" });
      expect(again.kind).toBe("noop");
    }
    // task/b was rebased, so its original commits are not ancestors of main; the rebase drops them as upstream.
    const bAgain = await mergeBranch(merger, {
      branch: "task/b",
      base: "main",
      strategy: "rebase",
      message: "m",
    });
    expect(bAgain.kind).toBe("noop");
    expect(await headSha(merger, "main")).toBe(tip);

    const missing = await mergeBranch(merger, {
      branch: "task/none",
      base: "main",
      strategy: "rebase",
      message: "m",
    });
    expect(missing).toMatchObject({ kind: "failed", code: "branch-missing" });
    const noBase = await mergeBranch(merger, {
      branch: "task/a",
      base: "nope",
      strategy: "rebase",
      message: "m",
    });
    expect(noBase).toMatchObject({ kind: "failed", code: "base-missing" });
  });

  it("discards local junk: a stale rebase in progress and untracked files", async () => {
    const target = await makeTarget();
    const base = await readFile(join(target, "shared.txt"), "utf8");
    await workerBranch(target, "task/a", { "shared.txt": editLine(base, 1, "A") });
    await workerBranch(target, "task/b", { "shared.txt": editLine(base, 1, "B") });
    const merger = await mergerClone(target);
    // Leave a conflicted rebase in progress, as if the merger crashed mid-merge.
    execFileSync("git", ["fetch", "-q", "origin"], { cwd: merger });
    execFileSync("git", ["checkout", "-q", "-b", "junk", "origin/task/b"], { cwd: merger });
    try {
      execFileSync("git", ["-c", "user.name=x", "-c", "user.email=x@x", "rebase", "origin/task/a"], {
        cwd: merger,
        stdio: "ignore",
      });
    } catch {
      // expected conflict
    }
    await writeFiles(merger, { "junk.txt": "junk\n", "node_modules/x.js": "x\n" });

    const result = await mergeBranch(merger, {
      branch: "task/a",
      base: "main",
      strategy: "rebase",
      message: "m",
    });
    expect(result.kind).toBe("merged");
    expect(gitOut(merger, "status", "--porcelain", "--untracked-files=all", "--ignored")).toBe("");
  });
});

describe("pushBase", () => {
  it("is rejected (never forced) when the target moved; redoing the merge from the new tip then lands", async () => {
    const target = await makeTarget();
    await workerBranch(target, "task/a", { "a.txt": "a\n" });
    const merger = await mergerClone(target);
    const merged = await mergeBranch(merger, {
      branch: "task/a",
      base: "main",
      strategy: "rebase",
      message: "m",
    });
    expect(merged.kind).toBe("merged");

    // Someone else lands a commit on main meanwhile.
    const other = join(root, "other");
    await cloneRepo(target, other);
    await writeFiles(other, { "other.txt": "o\n" });
    const otherSha = (await commitAll(other, "other"))!;
    expect(await pushBase(other, "main")).toEqual({ ok: true });

    const push = await pushBase(merger, "main");
    expect(push.ok).toBe(false);
    if (push.ok) return;
    expect(push.rejected).toBe(true);
    expect(push.reason).toMatch(/rejected/);
    expect(await headSha(target)).toBe(otherSha);

    const redo = await mergeBranch(merger, {
      branch: "task/a",
      base: "main",
      strategy: "rebase",
      message: "m",
    });
    expect(redo).toMatchObject({ kind: "merged", rebased: true });
    expect(await pushBase(merger, "main")).toEqual({ ok: true });
    expect(await isAncestor(target, otherSha, await headSha(target))).toBe(true);
    expect(await readFile(join(target, "a.txt"), "utf8")).toBe("a\n");
    expect(await readFile(join(target, "other.txt"), "utf8")).toBe("o\n");
  });
});
