import { existsSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { GitPushError, GitRefNotFoundError, GitUsageError } from "./errors.ts";
import { type GitEnvOptions, git, gitFailure, identityArgs, redact, runGit, splitZ } from "./exec.ts";

/** One commit as listed by {@link recentCommits}. */
export interface CommitInfo {
  sha: string;
  subject: string;
  author: string;
}

/** What {@link prepareTargetRepo} found: a URL (untouched), a bare repository (untouched), or a configured non-bare repository. */
export type TargetRepoKind = "remote" | "bare" | "configured";

/** Outcome of {@link pushBase}: `rejected` means the remote base moved (non-fast-forward); fetch and redo. */
export type PushBaseResult = { ok: true } | { ok: false; rejected: true; reason: string };

/**
 * The local directory a repository source designates, or null when it is a URL (`https://…`, `ssh://…`,
 * `user@host:path`). `file://` URLs and existing directories count as local.
 */
export function localRepoPath(source: string): string | null {
  if (source.startsWith("file://")) return fileURLToPath(source);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) return null;
  const path = resolve(source);
  if (existsSync(path) && statSync(path).isDirectory()) return path;
  return null;
}

/**
 * Creates an empty repository at `dir` (created if missing) whose initial branch is `branch`
 * (default "main"); `bare` for a bare repository. Throws GitError.
 */
export async function initRepo(
  dir: string,
  options: { branch?: string; bare?: boolean } = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const args = ["init", "-q", "-b", options.branch ?? "main"];
  if (options.bare) args.push("--bare");
  await git(dir, [...args, dir]);
}

/**
 * Clones `source` (local path or URL) into `dir` (must not exist or be empty; its parent is created).
 * `branch` checks that branch out instead of the remote HEAD. Credentials only via `options.env`, never in
 * `source`. Throws GitError.
 */
export async function cloneRepo(
  source: string,
  dir: string,
  options: { branch?: string } & GitEnvOptions = {},
): Promise<void> {
  const parent = dirname(dir);
  await mkdir(parent, { recursive: true });
  const args = ["clone", "-q"];
  if (options.branch) args.push("--branch", options.branch);
  args.push("--", source, dir);
  await git(parent, args, options);
}

/**
 * Fetches from `origin` into `dir`. Without refspecs: all branches with pruning of deleted ones; with
 * refspecs: exactly those (e.g. `+refs/heads/main:refs/remotes/origin/main`). Throws GitError.
 */
export async function fetch(
  dir: string,
  refspecs?: readonly string[],
  options: GitEnvOptions = {},
): Promise<void> {
  const args = refspecs?.length
    ? ["fetch", "-q", "origin", ...refspecs]
    : ["fetch", "-q", "--prune", "origin"];
  await git(dir, args, options);
}

/** Resolves `ref` (default HEAD) to a full commit sha. Throws GitRefNotFoundError when it does not exist. */
export async function headSha(dir: string, ref = "HEAD"): Promise<string> {
  const result = await runGit(dir, ["rev-parse", "--verify", "--quiet", `${ref}^{commit}`]);
  if (result.code !== 0) throw new GitRefNotFoundError(ref, dir);
  return result.stdout.trim();
}

/** True when `sha` (any commit-ish) exists in the object store of `dir`. */
export async function commitExists(dir: string, sha: string): Promise<boolean> {
  const result = await runGit(dir, ["cat-file", "-e", `${sha}^{commit}`]);
  return result.code === 0;
}

/** Creates branch `branch` at `startPoint` and checks it out (no upstream tracking). Throws GitError if it exists. */
export async function checkoutNewBranch(dir: string, branch: string, startPoint: string): Promise<void> {
  await git(dir, ["checkout", "-q", "--no-track", "-b", branch, startPoint]);
}

/** The checked-out branch name, or null when HEAD is detached. */
export async function currentBranch(dir: string): Promise<string | null> {
  const result = await runGit(dir, ["symbolic-ref", "-q", "--short", "HEAD"]);
  if (result.code === 1) return null;
  if (result.code !== 0) throw gitFailure(["symbolic-ref", "-q", "--short", "HEAD"], result);
  return result.stdout.trim();
}

/**
 * Stages everything (new, modified and deleted files, honouring .gitignore) and commits with `message`
 * using the library's identity (see `commitIdentity`). Hooks are not run (`--no-verify`): the merge queue
 * and the reconciler verify instead. Returns the new commit sha, or null when there was nothing to commit.
 */
export async function commitAll(dir: string, message: string): Promise<string | null> {
  await git(dir, ["add", "-A"]);
  const staged = await runGit(dir, ["diff", "--cached", "--quiet"]);
  if (staged.code === 0) return null;
  if (staged.code !== 1) throw gitFailure(["diff", "--cached", "--quiet"], staged);
  await git(dir, [...identityArgs(), "commit", "-q", "--no-verify", "-m", message]);
  return headSha(dir);
}

/** Parses `git push --porcelain` output: the summary of the first refused ref line (`!`), if any. */
function refusedRef(stdout: string): { rejected: boolean; reason: string } | null {
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("!\t")) continue;
    const summary = line.split("\t")[2] ?? line;
    const rejected = summary.startsWith("[rejected]");
    return { rejected, reason: summary.trim() };
  }
  return null;
}

async function protectedBranches(dir: string, base: string | undefined): Promise<Set<string>> {
  const names = new Set(["main", "master"]);
  if (base) names.add(base);
  const head = await runGit(dir, ["symbolic-ref", "-q", "refs/remotes/origin/HEAD"]);
  if (head.code === 0) names.add(head.stdout.trim().replace(/^refs\/remotes\/origin\//, ""));
  return names;
}

/**
 * Pushes local branch `branch` to the same name on `origin`. `force` rewrites the remote branch and is
 * refused (GitUsageError) for base branches: `base` if given, `main`, `master` and origin's default branch.
 * Throws GitPushError when the remote refuses (`rejected` = it moved), GitError on other failures.
 */
export async function pushBranch(
  dir: string,
  branch: string,
  options: { force?: boolean; base?: string } & GitEnvOptions = {},
): Promise<void> {
  if (options.force && (await protectedBranches(dir, options.base)).has(branch)) {
    throw new GitUsageError(`refusing to force-push base branch ${branch}`);
  }
  const refspec = `${options.force ? "+" : ""}refs/heads/${branch}:refs/heads/${branch}`;
  const args = ["push", "--porcelain", "origin", refspec];
  const result = await runGit(dir, args, options);
  if (result.code === 0) return;
  const refused = refusedRef(result.stdout);
  if (refused) throw new GitPushError(branch, redact(refused.reason), refused.rejected);
  throw gitFailure(args, result);
}

/**
 * Pushes local `base` to origin's `base` without ever forcing. Resolves `{ ok: false, rejected: true }` when
 * origin's base moved (non-fast-forward): the caller fetches, redoes its merge and pushes again.
 * Throws GitPushError (`rejected: false`) when the remote refuses for another reason (hook, dirty
 * working tree of a non-bare target), GitError on other failures (network, auth).
 */
export async function pushBase(
  dir: string,
  base: string,
  options: GitEnvOptions = {},
): Promise<PushBaseResult> {
  const args = ["push", "--porcelain", "origin", `refs/heads/${base}:refs/heads/${base}`];
  const result = await runGit(dir, args, options);
  if (result.code === 0) return { ok: true };
  const refused = refusedRef(result.stdout);
  if (refused?.rejected) return { ok: false, rejected: true, reason: redact(refused.reason) };
  if (refused) throw new GitPushError(base, redact(refused.reason), false);
  throw gitFailure(args, result);
}

/** Repo-relative paths of all tracked files. */
export async function listTrackedFiles(dir: string): Promise<string[]> {
  return splitZ(await git(dir, ["ls-files", "-z"]));
}

/** The last `n` commits reachable from HEAD, newest first; [] for a repository without commits. */
export async function recentCommits(dir: string, n: number): Promise<CommitInfo[]> {
  const hasHead = await runGit(dir, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]);
  if (hasHead.code !== 0) return [];
  const out = await git(dir, ["log", `-n${Math.max(0, Math.floor(n))}`, "--format=%H%x1f%s%x1f%an"]);
  return out
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => {
      const [sha = "", subject = "", author = ""] = line.split("\x1f");
      return { sha, subject, author };
    });
}

/**
 * True when commit `a` is an ancestor of (or equal to) commit `b`. Throws GitError when either does not
 * resolve to a commit.
 */
export async function isAncestor(dir: string, a: string, b: string): Promise<boolean> {
  const args = ["merge-base", "--is-ancestor", a, b];
  const result = await runGit(dir, args);
  if (result.code === 0) return true;
  if (result.code === 1) return false;
  throw gitFailure(args, result);
}

/**
 * True when `ref` names an existing branch: a full ref (`refs/…`), a local branch (`main`) or a
 * remote-tracking branch (`origin/main`).
 */
export async function branchExists(dir: string, ref: string): Promise<boolean> {
  const candidates = ref.startsWith("refs/") ? [ref] : [`refs/heads/${ref}`, `refs/remotes/${ref}`];
  for (const candidate of candidates) {
    const result = await runGit(dir, ["show-ref", "--verify", "--quiet", candidate]);
    if (result.code === 0) return true;
  }
  return false;
}

/**
 * Tracked text files (binary files are skipped) whose working-tree content has a line starting with
 * `<<<<<<< ` or `>>>>>>> `. Paths are relative to `dir`.
 */
export async function findConflictMarkers(dir: string): Promise<string[]> {
  const args = ["grep", "-I", "-l", "-z", "-E", "-e", "^(<<<<<<<|>>>>>>>) "];
  const result = await runGit(dir, args);
  if (result.code === 1) return [];
  if (result.code !== 0) throw gitFailure(args, result);
  return splitZ(result.stdout);
}

/**
 * Prepares a target repository so that the merge queue can push its base branch to it.
 *
 * For a local non-bare repository (a developer's checkout) git refuses by default to update the branch
 * that is checked out there (`receive.denyCurrentBranch=refuse`), so pushing `main` from the merger's own
 * clone would fail. Setting `receive.denyCurrentBranch=updateInstead` in that repository's local config
 * makes such a push update its working tree and index too, and git still refuses the push when that
 * working tree has uncommitted changes, so nobody's edits are overwritten. Bare repositories and URLs are
 * left untouched. Throws GitError when a local path is not a git repository.
 */
export async function prepareTargetRepo(path: string): Promise<TargetRepoKind> {
  const local = localRepoPath(path);
  if (local === null) return "remote";
  const bare = (await git(local, ["rev-parse", "--is-bare-repository"])).trim();
  if (bare === "true") return "bare";
  await git(local, ["config", "--local", "receive.denyCurrentBranch", "updateInstead"]);
  return "configured";
}

/**
 * Writes `git bundle` of `refs/heads/<branch>` to `path`, leaving out what `prerequisite` (a ref the
 * receiving side has, e.g. `refs/remotes/origin/main`) already holds. Throws GitError, e.g. when the branch
 * adds nothing to the prerequisite (git refuses an empty bundle).
 */
export async function bundleBranch(
  dir: string,
  path: string,
  branch: string,
  prerequisite: string,
): Promise<void> {
  await git(dir, ["bundle", "create", "-q", path, `refs/heads/${branch}`, `^${prerequisite}`]);
}
