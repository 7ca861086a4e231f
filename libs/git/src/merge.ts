import { type GitEnvOptions, git, gitFailure, identityArgs, redact, runGit, splitZ } from "./exec.ts";
import { isAncestor } from "./repo.ts";

/** How a branch lands on the base branch. `rebase` (linear history) is the merge queue's default. */
export type MergeStrategy = "rebase" | "fast-forward" | "merge-commit";

/** The merge strategies, for validating configuration. */
export const MERGE_STRATEGIES: readonly MergeStrategy[] = ["rebase", "fast-forward", "merge-commit"];

/** Why a merge failed without a conflict. */
export type MergeFailureCode =
  | "base-missing"
  | "branch-missing"
  | "not-fast-forward"
  | "rebase-failed"
  | "merge-failed";

/**
 * Outcome of {@link mergeBranch}. `merged`: the local base now points at `sha` (not pushed yet);
 * `rebased` is true when the branch had to be replayed because it was not based on the base tip.
 * `conflict`: the repo-relative files in conflict (the work tree is left clean). `noop`: the branch is
 * already contained in the base. `failed`: a deterministic failure that retrying the same merge will not fix.
 */
export type MergeResult =
  | { kind: "merged"; sha: string; rebased: boolean }
  | { kind: "conflict"; files: string[] }
  | { kind: "noop"; reason: string }
  | { kind: "failed"; reason: string; code: MergeFailureCode };

/** Input of {@link mergeBranch}. `message` is the merge commit message (used by `merge-commit`). */
export interface MergeBranchOptions extends GitEnvOptions {
  branch: string;
  base: string;
  strategy: MergeStrategy;
  message: string;
}

/** Temporary branch the rebase strategy replays a task branch on. */
const TEMP_BRANCH = "longshot-merge-tmp";
/** `git status --porcelain` codes of unmerged paths. */
const CONFLICT_CODES = new Set(["UU", "AA", "DD", "AU", "UA", "DU", "UD"]);

const remoteRef = (branch: string): string => `refs/remotes/origin/${branch}`;

/** Paths in conflict according to `git status --porcelain=v1 -z`. */
export async function conflictedFiles(dir: string): Promise<string[]> {
  const entries = splitZ(await git(dir, ["status", "--porcelain=v1", "-z", "--untracked-files=no"]));
  const files: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] ?? "";
    const code = entry.slice(0, 2);
    if (CONFLICT_CODES.has(code)) files.push(entry.slice(3));
    // Renames and copies carry their original path as the next record.
    if (code[0] === "R" || code[0] === "C") i++;
  }
  return files.sort();
}

/** Aborts any rebase/merge/cherry-pick in progress and drops every local change and untracked file. */
export async function discardLocalState(dir: string): Promise<void> {
  for (const args of [
    ["rebase", "--abort"],
    ["merge", "--abort"],
    ["cherry-pick", "--abort"],
  ]) {
    await runGit(dir, args);
  }
  // A rebase whose abort failed (e.g. corrupted state) still blocks checkouts; --quit forgets it.
  await runGit(dir, ["rebase", "--quit"]);
  await git(dir, ["reset", "-q", "--hard"]);
  await git(dir, ["clean", "-q", "-fdx"]);
}

/** Checks out local `base` at origin's base, clean, and deletes the temp branch. */
async function resetToOriginBase(dir: string, base: string): Promise<void> {
  await git(dir, ["checkout", "-q", "-f", "--no-track", "-B", base, remoteRef(base)]);
  await git(dir, ["clean", "-q", "-fdx"]);
  await runGit(dir, ["branch", "-q", "-D", TEMP_BRANCH]);
}

/** Fetches one branch of origin into its remote-tracking ref; false when origin has no such branch. */
async function fetchBranch(dir: string, branch: string, options: GitEnvOptions): Promise<boolean> {
  const args = ["fetch", "-q", "--no-tags", "origin", `+refs/heads/${branch}:${remoteRef(branch)}`];
  const result = await runGit(dir, args, options);
  if (result.code === 0) return true;
  if (/couldn't find remote ref/i.test(result.stderr)) return false;
  throw gitFailure(args, result);
}

/** Local HEAD sha. */
async function head(dir: string): Promise<string> {
  return (await git(dir, ["rev-parse", "HEAD"])).trim();
}

function firstLines(text: string, n = 4): string {
  return redact(text.trim()).split("\n").slice(0, n).join(" | ");
}

/**
 * Lands origin's `branch` on origin's `base` in `workDir`, a clone whose `origin` is the target repository.
 * It fetches both branches, resets local `base` to `origin/<base>` (aborting any stale rebase or merge and
 * discarding local changes and untracked files), then applies the strategy:
 * - `fast-forward`: `merge --ff-only`; `failed` (code `not-fast-forward`) when the branch is not based on the tip.
 * - `rebase`: replays the branch on a temp branch onto the base tip, then fast-forwards the base to it.
 * - `merge-commit`: `merge --no-ff` with `message`.
 * On a conflict the conflicting files are captured, the operation is aborted and the work tree is reset.
 * It never pushes: call `pushBase` afterwards (and redo the merge when the push is rejected).
 * Throws GitError for unexpected git failures (network, corrupt repository): those are worth retrying.
 */
export async function mergeBranch(workDir: string, options: MergeBranchOptions): Promise<MergeResult> {
  const { branch, base, strategy } = options;
  await discardLocalState(workDir);
  if (!(await fetchBranch(workDir, base, options))) {
    return { kind: "failed", code: "base-missing", reason: `base branch ${base} not found on origin` };
  }
  const hasBranch = await fetchBranch(workDir, branch, options);
  await resetToOriginBase(workDir, base);
  if (!hasBranch)
    return { kind: "failed", code: "branch-missing", reason: `branch ${branch} not found on origin` };

  const baseSha = await head(workDir);
  const branchSha = (await git(workDir, ["rev-parse", remoteRef(branch)])).trim();
  if (await isAncestor(workDir, branchSha, baseSha)) {
    return {
      kind: "noop",
      reason: `branch ${branch} (${branchSha.slice(0, 12)}) is already contained in ${base}`,
    };
  }
  const basedOnTip = await isAncestor(workDir, baseSha, branchSha);

  if (strategy === "fast-forward") {
    const result = await runGit(workDir, ["merge", "-q", "--ff-only", remoteRef(branch)]);
    if (result.code !== 0) {
      await resetToOriginBase(workDir, base);
      return {
        kind: "failed",
        code: "not-fast-forward",
        reason: `cannot fast-forward ${base} to ${branch}: ${firstLines(result.stderr)}`,
      };
    }
    return { kind: "merged", sha: await head(workDir), rebased: false };
  }

  if (strategy === "merge-commit") {
    const args = [
      ...identityArgs(),
      "merge",
      "-q",
      "--no-ff",
      "--no-edit",
      "-m",
      options.message,
      remoteRef(branch),
    ];
    const result = await runGit(workDir, args);
    if (result.code !== 0) {
      const files = await conflictedFiles(workDir);
      await discardLocalState(workDir);
      await resetToOriginBase(workDir, base);
      if (files.length > 0) return { kind: "conflict", files };
      return { kind: "failed", code: "merge-failed", reason: firstLines(result.stderr || result.stdout) };
    }
    return { kind: "merged", sha: await head(workDir), rebased: false };
  }

  // rebase
  await git(workDir, ["checkout", "-q", "-f", "--no-track", "-B", TEMP_BRANCH, remoteRef(branch)]);
  const rebase = await runGit(workDir, [...identityArgs(), "rebase", "-q", remoteRef(base)]);
  if (rebase.code !== 0) {
    const files = await conflictedFiles(workDir);
    await discardLocalState(workDir);
    await resetToOriginBase(workDir, base);
    if (files.length > 0) return { kind: "conflict", files };
    return { kind: "failed", code: "rebase-failed", reason: firstLines(rebase.stderr || rebase.stdout) };
  }
  const rebasedSha = await head(workDir);
  await git(workDir, ["checkout", "-q", "-f", base]);
  if (rebasedSha === baseSha) {
    await resetToOriginBase(workDir, base);
    // Every commit of the branch was dropped as already upstream (same patches): e.g. a redelivered handoff.
    return { kind: "noop", reason: `the changes of ${branch} are already present in ${base}` };
  }
  const ff = await runGit(workDir, ["merge", "-q", "--ff-only", TEMP_BRANCH]);
  if (ff.code !== 0) {
    await resetToOriginBase(workDir, base);
    return { kind: "failed", code: "rebase-failed", reason: firstLines(ff.stderr) };
  }
  await runGit(workDir, ["branch", "-q", "-D", TEMP_BRANCH]);
  return { kind: "merged", sha: await head(workDir), rebased: !basedOnTip };
}
