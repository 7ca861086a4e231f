import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildCandidate,
  checkoutNewBranch,
  cloneRepo,
  commitAll,
  existingCommits,
  fetchRemoteBranch,
  fetchRemoteBranches,
  GitUsageError,
  headSha,
  initRepo,
  isAncestor,
  pushBranch,
  pushCommitToBase,
  storeCommit,
  treeOf,
} from "../src/index.ts";

// Candidates on real repositories: a target, a worker clone pushing branches, the merge queue's clone.

let root: string;
let target: string;
let work: string;
let queue: string;
let base: string;

const git = (dir: string, args: string[]) => execFileSync("git", args, { cwd: dir, encoding: "utf8" }).trim();
const lines = (n: number) => `${Array.from({ length: n }, (_, i) => `line ${i + 1}`).join("\n")}\n`;
const edit = (n: number, at: number, text: string) =>
  lines(n)
    .split("\n")
    .map((l, i) => (i === at - 1 ? text : l))
    .join("\n");

/** A branch cut from the target's main with one commit per entry of `commits` (files → content). */
async function branch(name: string, commits: Record<string, string>[]): Promise<string> {
  git(work, ["fetch", "-q", "origin"]);
  await checkoutNewBranch(work, name, "origin/main");
  for (const [i, files] of commits.entries()) {
    for (const [path, content] of Object.entries(files)) await writeFile(join(work, path), content);
    await commitAll(work, `${name} ${i + 1}`);
  }
  await pushBranch(work, name);
  const sha = await headSha(work);
  git(work, ["checkout", "-q", "--detach"]);
  expect(await fetchRemoteBranch(queue, name)).toBe(sha);
  return sha;
}

beforeAll(async () => {
  process.env.GIT_CONFIG_GLOBAL = "/dev/null";
  process.env.GIT_CONFIG_NOSYSTEM = "1";
  root = await mkdtemp(join(tmpdir(), "longshot-candidate-"));
  target = join(root, "target");
  await initRepo(target, { branch: "main", bare: true });
  const seed = join(root, "seed");
  await initRepo(seed, { branch: "main" });
  await writeFile(join(seed, "shared.txt"), lines(20));
  await commitAll(seed, "initial");
  git(seed, ["push", "-q", target, "main:main"]);
  work = join(root, "work");
  await cloneRepo(target, work);
  queue = join(root, "queue");
  await cloneRepo(target, queue);
  base = await headSha(queue, "refs/remotes/origin/main");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("buildCandidate", () => {
  it("takes a branch based on `onto` as it is, and stacks the next one on that candidate, rebased", async () => {
    const a = await branch("a", [{ "shared.txt": edit(20, 2, "from a") }]);
    const b = await branch("b", [{ "shared.txt": edit(20, 19, "from b") }]);
    const ca = await buildCandidate(queue, {
      onto: base,
      head: a,
      strategy: "rebase",
      message: "a",
      squash: true,
    });
    expect(ca).toMatchObject({
      kind: "built",
      commit: a,
      rebased: false,
      squashed: false,
      strategy: "rebase",
    });
    if (ca.kind !== "built") throw new Error("unreachable");
    const cb = await buildCandidate(queue, {
      onto: ca.commit,
      head: "refs/remotes/origin/b",
      strategy: "rebase",
      message: "b",
      squash: true,
    });
    expect(cb).toMatchObject({ kind: "built", rebased: true, squashed: false });
    if (cb.kind !== "built") throw new Error("unreachable");
    expect(git(queue, ["rev-parse", `${cb.commit}^`])).toBe(ca.commit);
    expect(cb.tree).toBe(await treeOf(queue, cb.commit));
    const content = git(queue, ["show", `${cb.commit}:shared.txt`]);
    expect(content).toContain("from a");
    expect(content).toContain("from b");
    expect(b).not.toBe(cb.commit);
    // Nothing moved: no branch, a clean work tree.
    expect(git(queue, ["status", "--porcelain"])).toBe("");
    expect(await headSha(queue, "refs/remotes/origin/main")).toBe(base);
  });

  it("folds a branch of several commits into one commit on `onto` when squashing, and not otherwise", async () => {
    const m = await branch("multi", [{ "m1.txt": "1\n" }, { "m2.txt": "2\n" }, { "m1.txt": "1 again\n" }]);
    const squashed = await buildCandidate(queue, {
      onto: base,
      head: m,
      strategy: "rebase",
      message: "squash of multi",
      squash: true,
    });
    expect(squashed).toMatchObject({ kind: "built", squashed: true, rebased: false });
    if (squashed.kind !== "built") throw new Error("unreachable");
    expect(git(queue, ["rev-list", "--count", `${base}..${squashed.commit}`])).toBe("1");
    expect(git(queue, ["log", "-1", "--format=%s", squashed.commit])).toBe("squash of multi");
    expect(squashed.tree).toBe(await treeOf(queue, m));
    const kept = await buildCandidate(queue, {
      onto: base,
      head: m,
      strategy: "rebase",
      message: "x",
      squash: false,
    });
    expect(kept).toMatchObject({ kind: "built", commit: m, squashed: false });
  });

  it("reports a conflict with its files, leaving the clone clean", async () => {
    const x = await branch("x", [{ "shared.txt": edit(20, 7, "x wins") }]);
    const y = await branch("y", [{ "shared.txt": edit(20, 7, "y disagrees") }]);
    const cx = await buildCandidate(queue, {
      onto: base,
      head: x,
      strategy: "rebase",
      message: "x",
      squash: true,
    });
    if (cx.kind !== "built") throw new Error("x should build");
    expect(
      await buildCandidate(queue, {
        onto: cx.commit,
        head: y,
        strategy: "rebase",
        message: "y",
        squash: true,
      }),
    ).toEqual({
      kind: "conflict",
      files: ["shared.txt"],
    });
    expect(git(queue, ["status", "--porcelain"])).toBe("");
    expect(
      await buildCandidate(queue, {
        onto: cx.commit,
        head: y,
        strategy: "merge-commit",
        message: "y",
        squash: true,
      }),
    ).toEqual({
      kind: "conflict",
      files: ["shared.txt"],
    });
    expect(git(queue, ["status", "--porcelain"])).toBe("");
  });

  it("finds nothing to do when the branch or its patches are already in `onto`", async () => {
    const n = await branch("n", [{ "n.txt": "n\n" }]);
    const cn = await buildCandidate(queue, {
      onto: base,
      head: n,
      strategy: "rebase",
      message: "n",
      squash: true,
    });
    if (cn.kind !== "built") throw new Error("n should build");
    expect(
      (
        await buildCandidate(queue, {
          onto: cn.commit,
          head: n,
          strategy: "rebase",
          message: "n",
          squash: true,
        })
      ).kind,
    ).toBe("noop");
    // The same patch replayed elsewhere (e.g. landed after a rebase): dropped as already upstream.
    const o = await branch("o", [{ "o.txt": "o\n" }]);
    const onO = await buildCandidate(queue, {
      onto: base,
      head: o,
      strategy: "rebase",
      message: "o",
      squash: true,
    });
    if (onO.kind !== "built") throw new Error("o should build");
    const nOnO = await buildCandidate(queue, {
      onto: onO.commit,
      head: n,
      strategy: "rebase",
      message: "n",
      squash: true,
    });
    if (nOnO.kind !== "built") throw new Error("n on o should build");
    expect(nOnO.rebased).toBe(true);
    expect(
      (
        await buildCandidate(queue, {
          onto: nOnO.commit,
          head: n,
          strategy: "rebase",
          message: "n",
          squash: true,
        })
      ).kind,
    ).toBe("noop");
  });

  it("makes a merge commit whose first parent is `onto`; fast-forward falls back to a rebase when not based", async () => {
    const p = await branch("p", [{ "p.txt": "p\n" }]);
    const q = await branch("q", [{ "q.txt": "q\n" }]);
    const cp = await buildCandidate(queue, {
      onto: base,
      head: p,
      strategy: "merge-commit",
      message: "merge p",
      squash: true,
    });
    expect(cp).toMatchObject({ kind: "built", strategy: "merge-commit", rebased: false });
    if (cp.kind !== "built") throw new Error("unreachable");
    expect(git(queue, ["rev-parse", `${cp.commit}^1`])).toBe(base);
    expect(git(queue, ["rev-parse", `${cp.commit}^2`])).toBe(p);
    const cq = await buildCandidate(queue, {
      onto: cp.commit,
      head: q,
      strategy: "fast-forward",
      message: "q",
      squash: true,
    });
    expect(cq).toMatchObject({ kind: "built", strategy: "rebase", rebased: true });
    const ff = await buildCandidate(queue, {
      onto: base,
      head: q,
      strategy: "fast-forward",
      message: "q",
      squash: true,
    });
    expect(ff).toMatchObject({ kind: "built", commit: q, strategy: "fast-forward", rebased: false });
  });

  it("reports a head it cannot find", async () => {
    expect(
      await buildCandidate(queue, {
        onto: base,
        head: "refs/remotes/origin/ghost",
        strategy: "rebase",
        message: "g",
        squash: true,
      }),
    ).toMatchObject({
      kind: "failed",
      code: "head-missing",
    });
    expect(await fetchRemoteBranch(queue, "ghost")).toBeUndefined();
    // Several branches in one fetch; one missing branch fails the whole fetch (callers fall back to one by one).
    await fetchRemoteBranches(queue, ["a", "b"]);
    await expect(fetchRemoteBranches(queue, ["a", "ghost"])).rejects.toThrow(/ghost/);
    const a = await headSha(queue, "refs/remotes/origin/a");
    const absent = `${a.slice(0, 39)}${a.endsWith("0") ? "1" : "0"}`;
    expect(await existingCommits(queue, [a, absent, "not-a-sha"])).toEqual(new Set([a]));
  });
});

describe("pushCommitToBase and storeCommit", () => {
  it("moves the base only forward, reports a moved base, and stores candidates under private refs only", async () => {
    const s1 = await branch("s1", [{ "s1.txt": "1\n" }]);
    const c1 = await buildCandidate(queue, {
      onto: base,
      head: s1,
      strategy: "rebase",
      message: "s1",
      squash: true,
    });
    if (c1.kind !== "built") throw new Error("unreachable");
    expect(await pushCommitToBase(queue, c1.commit, "main")).toEqual({ ok: true });
    expect(git(target, ["rev-parse", "main"])).toBe(c1.commit);
    // A candidate built on the old base is not a descendant of the new tip: refused, never forced.
    const s2 = await branch("s2", [{ "s2.txt": "2\n" }]);
    const stale = await buildCandidate(queue, {
      onto: base,
      head: s2,
      strategy: "rebase",
      message: "s2",
      squash: true,
    });
    if (stale.kind !== "built") throw new Error("unreachable");
    expect(await pushCommitToBase(queue, stale.commit, "main")).toMatchObject({ ok: false, rejected: true });
    expect(git(target, ["rev-parse", "main"])).toBe(c1.commit);
    expect(await isAncestor(queue, base, c1.commit)).toBe(true);

    const mirror = join(root, "mirror.git");
    await initRepo(mirror, { bare: true });
    await storeCommit(queue, mirror, stale.commit, "refs/longshot/candidates/s2");
    expect(git(mirror, ["rev-parse", "refs/longshot/candidates/s2"])).toBe(stale.commit);
    await expect(storeCommit(queue, mirror, stale.commit, "refs/heads/main")).rejects.toBeInstanceOf(
      GitUsageError,
    );
  });
});
