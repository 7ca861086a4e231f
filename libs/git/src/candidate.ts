import { existsSync } from "node:fs";
import { join } from "node:path";
import { GitPushError, GitUsageError } from "./errors.ts";
import { type GitEnvOptions, git, gitFailure, identityArgs, redact, runGit } from "./exec.ts";
import { conflictedFiles, discardLocalState, type MergeStrategy } from "./merge.ts";
import type { PushBaseResult } from "./repo.ts";

/**
 * Merge queue candidates: a task branch applied onto any commit (the base branch's tip, or the candidate
 * ahead of it in a speculative stack), built in a working clone without moving any branch, so the exact
 * tree that would land can be verified before anything is pushed.
 */

/** Why a candidate could not be built, besides a conflict. */
export type CandidateFailureCode = "head-missing" | "rebase-failed" | "merge-failed";

/**
 * Outcome of {@link buildCandidate}. `built`: `commit` (whose tree is `tree`) is `onto` with the branch applied:
 * its first parent is `onto`; `rebased` when the branch had to be replayed (it was not based on `onto`);
 * `squashed` when several commits were folded into `commit`; `strategy` is what was applied (a fast-forward
 * that is not possible is done as a rebase). `conflict`: the files in conflict. `noop`: everything of the
 * branch is already in `onto`. `failed`: a deterministic failure.
 */
export type CandidateResult =
  | {
      kind: "built";
      commit: string;
      tree: string;
      strategy: MergeStrategy;
      rebased: boolean;
      squashed: boolean;
    }
  | { kind: "conflict"; files: string[] }
  | { kind: "noop"; reason: string }
  | { kind: "failed"; code: CandidateFailureCode; reason: string };

/** Input of {@link buildCandidate}. */
export interface BuildCandidateOptions {
  /** The commit the candidate goes on (the base's tip or the previous candidate's commit). */
  onto: string;
  /** Its tree, when the caller knows it (saves a git call). */
  ontoTree?: string | undefined;
  /** The branch's head: a commit or a ref of the working clone (e.g. `refs/remotes/origin/<branch>`). */
  head: string;
  strategy: MergeStrategy;
  /** Message of a merge commit or of a squashed commit. */
  message: string;
  /**
   * Fold a branch of several commits into one commit on `onto` (rebase and fast-forward), so that every commit
   * the candidate adds to the base is one verified tree. A single commit is never rewritten beyond the rebase.
   */
  squash: boolean;
}

/** Temporary branch candidates are replayed on. */
const TEMP_BRANCH = "longshot-candidate-tmp";

function firstLines(text: string, n = 4): string {
  return redact(text.trim()).split("\n").slice(0, n).join(" | ");
}

async function resolveCommit(dir: string, ref: string): Promise<string | undefined> {
  const r = await runGit(dir, ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

async function head(dir: string): Promise<string> {
  return (await git(dir, ["rev-parse", "HEAD"])).trim();
}

/** The tree of `commit`. Throws GitError when it does not resolve. */
export async function treeOf(dir: string, commit: string): Promise<string> {
  return (await git(dir, ["rev-parse", `${commit}^{tree}`])).trim();
}

/**
 * Aborts a rebase, merge or cherry-pick left in progress (by a crash, or a conflict just reported) and drops
 * local changes; looks at git's state files first, so the common case costs no git process.
 */
async function abandonInProgress(dir: string): Promise<void> {
  const gitDir = join(dir, ".git");
  const inProgress = ["rebase-merge", "rebase-apply", "MERGE_HEAD", "CHERRY_PICK_HEAD"].some((f) =>
    existsSync(join(gitDir, f)),
  );
  if (inProgress) await discardLocalState(dir);
}

/**
 * Builds the candidate of `head` on `onto` in `dir` (a non-bare working clone holding both commits), with the
 * strategy's semantics of `mergeBranch`: `fast-forward` takes the branch as it is when it is based on `onto`
 * (else it is rebased), `rebase` replays it onto `onto` (a branch already based on it is taken as it is),
 * `merge-commit` makes a merge commit whose first parent is `onto`. No operation is left in progress and no branch
 * but the clone's own temp branch or remote is touched. Throws GitError for unexpected git failures.
 */
export async function buildCandidate(dir: string, o: BuildCandidateOptions): Promise<CandidateResult> {
  await abandonInProgress(dir);
  // A full sha is checked by the rev-list below; a ref is resolved first.
  const tip = /^[0-9a-f]{40}$/.test(o.head) ? o.head : await resolveCommit(dir, o.head);
  const missing = { kind: "failed" as const, code: "head-missing" as const, reason: `${o.head} not found` };
  if (tip === undefined) return missing;
  // One process for both ancestries: commits only in `onto`, and only in the branch (its own commits).
  const range = ["rev-list", "--left-right", "--count", `${o.onto}...${tip}`];
  const sides = await runGit(dir, range);
  if (sides.code !== 0) {
    if ((await resolveCommit(dir, tip)) === undefined) return missing;
    throw gitFailure(range, sides);
  }
  const [onlyOnto = 0, count = 0] = sides.stdout.trim().split(/\s+/).map(Number);
  if (count === 0) {
    return {
      kind: "noop",
      reason: `${o.head} (${tip.slice(0, 12)}) is already contained in ${o.onto.slice(0, 12)}`,
    };
  }
  const based = onlyOnto === 0;
  const strategy: MergeStrategy = o.strategy === "fast-forward" && !based ? "rebase" : o.strategy;
  const built = async (
    commit: string,
    rebased: boolean,
    squashed: boolean,
    tree?: string,
  ): Promise<CandidateResult> => ({
    kind: "built",
    commit,
    tree: tree ?? (await treeOf(dir, commit)),
    strategy,
    rebased,
    squashed,
  });
  if (based && strategy !== "merge-commit") {
    // The branch is already on `onto`: taken as it is, or folded into one commit.
    if (!o.squash || count <= 1) return built(tip, false, false);
    const args = [...identityArgs(), "commit-tree", `${tip}^{tree}`, "-p", o.onto, "-m", o.message];
    return built((await git(dir, args)).trim(), false, true);
  }
  // Without a work tree: one 3-way merge of the branch onto `onto` (a cherry-pick for a one-commit branch, a
  // squash for several), then commit-tree. Only a branch of several commits that must keep them is rebased in
  // the work tree (or everything, on a git without `merge-tree --write-tree`, before 2.38).
  if (strategy === "merge-commit" || o.squash || count <= 1) {
    const merged = await mergeTree(dir, o.onto, tip);
    if (merged?.kind === "conflict") return merged;
    if (merged !== undefined) {
      if (strategy === "merge-commit") {
        const args = [
          ...identityArgs(),
          "commit-tree",
          merged.tree,
          "-p",
          o.onto,
          "-p",
          tip,
          "-m",
          o.message,
        ];
        return built((await git(dir, args)).trim(), false, false, merged.tree);
      }
      if (merged.tree === (o.ontoTree ?? (await treeOf(dir, o.onto)))) {
        // Everything of the branch is in `onto` already (same changes), e.g. a redelivered handoff.
        return {
          kind: "noop",
          reason: `the changes of ${o.head} are already present in ${o.onto.slice(0, 12)}`,
        };
      }
      if (count <= 1)
        return built(await replayCommit(dir, tip, merged.tree, o.onto), true, false, merged.tree);
      const args = [...identityArgs(), "commit-tree", merged.tree, "-p", o.onto, "-m", o.message];
      return built((await git(dir, args)).trim(), true, true, merged.tree);
    }
  }
  try {
    if (strategy === "merge-commit") {
      await git(dir, ["checkout", "-q", "-f", "--detach", o.onto]);
      const r = await runGit(dir, [
        ...identityArgs(),
        "merge",
        "-q",
        "--no-ff",
        "--no-edit",
        "-m",
        o.message,
        tip,
      ]);
      if (r.code !== 0) {
        const files = await conflictedFiles(dir);
        if (files.length > 0) return { kind: "conflict", files };
        return { kind: "failed", code: "merge-failed", reason: firstLines(r.stderr || r.stdout) };
      }
      return built(await head(dir), false, false);
    }
    await git(dir, ["checkout", "-q", "-f", "--no-track", "-B", TEMP_BRANCH, tip]);
    const r = await runGit(dir, [...identityArgs(), "rebase", "-q", o.onto]);
    if (r.code !== 0) {
      const files = await conflictedFiles(dir);
      if (files.length > 0) return { kind: "conflict", files };
      return { kind: "failed", code: "rebase-failed", reason: firstLines(r.stderr || r.stdout) };
    }
    const replayed = await head(dir);
    if (replayed === o.onto) {
      // Every commit was dropped as already upstream (same patches), e.g. a redelivered handoff.
      return {
        kind: "noop",
        reason: `the changes of ${o.head} are already present in ${o.onto.slice(0, 12)}`,
      };
    }
    if (!o.squash || count <= 1) return built(replayed, true, false);
    const args = [...identityArgs(), "commit-tree", `${replayed}^{tree}`, "-p", o.onto, "-m", o.message];
    return built((await git(dir, args)).trim(), true, true);
  } finally {
    // Checkouts are forced, so only an operation stopped half-way needs undoing.
    await abandonInProgress(dir);
  }
}

/** Whether this git has `merge-tree --write-tree` (2.38+); probed once per process. */
let writeTreeSupported: boolean | undefined;

/**
 * The 3-way merge of `theirs` into `ours` (their merge base as the base) as a tree, without a work tree:
 * `{ tree }`, or the conflicted files; undefined when this git cannot do it (older than 2.38).
 */
async function mergeTree(
  dir: string,
  ours: string,
  theirs: string,
): Promise<{ kind: "merged"; tree: string } | { kind: "conflict"; files: string[] } | undefined> {
  if (writeTreeSupported === false) return undefined;
  const args = ["merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs];
  const r = await runGit(dir, args);
  if (r.code !== 0 && r.code !== 1) {
    if (writeTreeSupported === undefined && /usage|unknown option|write-tree/i.test(r.stderr)) {
      writeTreeSupported = false;
      return undefined;
    }
    throw gitFailure(args, r);
  }
  writeTreeSupported = true;
  const [tree = "", ...rest] = r.stdout.split("\n");
  if (r.code === 0) return { kind: "merged", tree: tree.trim() };
  const files = [...new Set(rest.map((l) => l.trim()).filter((l) => l.length > 0))].sort();
  return { kind: "conflict", files };
}

/** A commit of `tree` on `parent` with `original`'s author, date and message (a cherry-pick by plumbing). */
async function replayCommit(dir: string, original: string, tree: string, parent: string): Promise<string> {
  const [name = "", email = "", date = "", ...message] = (
    await git(dir, ["log", "-1", "--format=%an%x00%ae%x00%ad%x00%B", "--date=raw", original])
  ).split("\0");
  const env = { GIT_AUTHOR_NAME: name, GIT_AUTHOR_EMAIL: email, GIT_AUTHOR_DATE: date };
  const args = [...identityArgs(), "commit-tree", tree, "-p", parent, "-m", message.join("\0").trimEnd()];
  return (await git(dir, args, { env })).trim();
}

/**
 * Fetches `refs/heads/<branch>` of origin into `refs/remotes/origin/<branch>` and returns its commit, or
 * undefined when origin has no such branch. Throws GitError for other failures (network, auth).
 */
export async function fetchRemoteBranch(
  dir: string,
  branch: string,
  options: GitEnvOptions = {},
): Promise<string | undefined> {
  const into = `refs/remotes/origin/${branch}`;
  const args = ["fetch", "-q", "--no-tags", "origin", `+refs/heads/${branch}:${into}`];
  const r = await runGit(dir, args, options);
  if (r.code !== 0) {
    if (/couldn't find remote ref/i.test(r.stderr)) return undefined;
    throw gitFailure(args, r);
  }
  return resolveCommit(dir, into);
}

/** Which of `shas` are commits of `dir`'s object store (one git call for all of them). */
export async function existingCommits(dir: string, shas: readonly string[]): Promise<Set<string>> {
  const valid = shas.filter((sha) => /^[0-9a-f]{40}$/.test(sha));
  if (valid.length === 0) return new Set();
  const r = await runGit(dir, ["rev-list", "--no-walk", "--ignore-missing", ...valid]);
  if (r.code !== 0) throw gitFailure(["rev-list", "--no-walk", "--ignore-missing", "…"], r);
  return new Set(r.stdout.split("\n").filter((l) => l.length > 0));
}

/**
 * Fetches several branches of origin (`refs/heads/<b>` into `refs/remotes/origin/<b>`) in one `git fetch`.
 * Throws GitError when git fails, e.g. when one of them does not exist on origin (fetch them one by one then).
 */
export async function fetchRemoteBranches(
  dir: string,
  branches: readonly string[],
  options: GitEnvOptions = {},
): Promise<void> {
  if (branches.length === 0) return;
  const refspecs = branches.map((b) => `+refs/heads/${b}:refs/remotes/origin/${b}`);
  await git(dir, ["fetch", "-q", "--no-tags", "origin", ...refspecs], options);
}

/**
 * Pushes `commit` to origin's `refs/heads/<base>` without ever forcing: the base only moves forward, to a
 * descendant of its tip. Resolves `{ ok: false, rejected: true }` when origin's base moved meanwhile; throws
 * GitPushError when the remote refuses for another reason (hook, dirty working tree of a non-bare target),
 * GitError on other failures.
 */
export async function pushCommitToBase(
  dir: string,
  commit: string,
  base: string,
  options: GitEnvOptions = {},
): Promise<PushBaseResult> {
  const args = ["push", "--porcelain", "origin", `${commit}:refs/heads/${base}`];
  const result = await runGit(dir, args, options);
  if (result.code === 0) return { ok: true };
  for (const line of result.stdout.split("\n")) {
    if (!line.startsWith("!\t")) continue;
    const summary = (line.split("\t")[2] ?? line).trim();
    if (summary.startsWith("[rejected]")) return { ok: false, rejected: true, reason: redact(summary) };
    throw new GitPushError(base, redact(summary), false);
  }
  throw gitFailure(args, result);
}

/**
 * Stores `commit` of `dir` in another local repository `destination` (e.g. a sandbox provider's mirror) under
 * the private ref `ref` (forced: the ref is the caller's). Refuses branches (`refs/heads/*`): this never moves
 * a branch. Throws GitUsageError for a branch ref, GitError when git fails.
 */
export async function storeCommit(
  dir: string,
  destination: string,
  commit: string,
  ref: string,
): Promise<void> {
  if (!ref.startsWith("refs/") || ref.startsWith("refs/heads/")) {
    throw new GitUsageError(`refusing to store a commit under ${ref}: only private refs outside refs/heads`);
  }
  await git(dir, ["push", "-q", "--no-verify", destination, `+${commit}:${ref}`]);
}
