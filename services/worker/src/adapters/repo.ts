import { existsSync } from "node:fs";
import { appendFile, mkdir, readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import {
  bundleBranch,
  commitAll,
  conflictedFiles,
  currentBranch,
  diffStats,
  findConflictMarkers,
  headSha,
} from "@longshot/git";
import type { RepoOutcome } from "../domain/handoff.ts";
import type { RebaseState } from "../domain/prompt.ts";

/** Build output and caches kept out of worker commits, via `.git/info/exclude` (never `.gitignore`). */
export const ARTIFACT_EXCLUDES = [
  "node_modules/",
  "dist/",
  "build/",
  ".turbo/",
  "*.tsbuildinfo",
  "coverage/",
];

/**
 * Adds {@link ARTIFACT_EXCLUDES} to the repository's `info/exclude` (lines already there are not repeated).
 * Editing `.gitignore` instead would put the same edit on every worker branch and make them conflict.
 */
export async function excludeArtifacts(repoDir: string): Promise<void> {
  const path = join(await commonGitDir(repoDir), "info", "exclude");
  await mkdir(dirname(path), { recursive: true });
  const current = await readFile(path, "utf8").catch(() => "");
  const have = new Set(current.split("\n").map((l) => l.trim()));
  const missing = ARTIFACT_EXCLUDES.filter((p) => !have.has(p));
  if (missing.length === 0) return;
  const prefix = current.length > 0 && !current.endsWith("\n") ? "\n" : "";
  await appendFile(path, `${prefix}# longshot worker: build artifacts\n${missing.join("\n")}\n`);
}

/**
 * The git directory holding `info/exclude`: `<repo>/.git`, or for a linked worktree (`.git` is a file
 * `gitdir: <path>`) the common directory named in `<gitdir>/commondir`.
 */
async function commonGitDir(repoDir: string): Promise<string> {
  const dotGit = join(repoDir, ".git");
  if ((await stat(dotGit)).isDirectory()) return dotGit;
  const gitdir = resolve(repoDir, (await readFile(dotGit, "utf8")).replace(/^gitdir:\s*/, "").trim());
  const common = await readFile(join(gitdir, "commondir"), "utf8").catch(() => "");
  return common.trim().length > 0 ? resolve(gitdir, common.trim()) : gitdir;
}

/**
 * The repository's own git directory: `<repo>/.git`, or for a linked worktree the directory named by the
 * `.git` file (where that worktree's rebase state lives).
 */
async function ownGitDir(repoDir: string): Promise<string> {
  const dotGit = join(repoDir, ".git");
  if ((await stat(dotGit)).isDirectory()) return dotGit;
  return resolve(repoDir, (await readFile(dotGit, "utf8")).replace(/^gitdir:\s*/, "").trim());
}

/**
 * True while a rebase is in progress in `repoDir` (git's `rebase-merge` or `rebase-apply` directory
 * exists). Throws when `repoDir` is not a git repository.
 */
export async function rebaseInProgress(repoDir: string): Promise<boolean> {
  const dir = await ownGitDir(repoDir);
  return existsSync(join(dir, "rebase-merge")) || existsSync(join(dir, "rebase-apply"));
}

/**
 * The rebase state of a conflict-fix clone: whether a rebase is in progress and the unmerged paths
 * (repo-relative, sorted; what `git diff --name-only --diff-filter=U` lists). Throws GitError.
 */
export async function readRebaseState(repoDir: string): Promise<RebaseState> {
  return { inProgress: await rebaseInProgress(repoDir), files: await conflictedFiles(repoDir) };
}

/** Options of {@link finalizeRepo}. */
export interface FinalizeOptions {
  repoDir: string;
  /** Sha of HEAD when the worker started. */
  startSha: string;
  /**
   * What the diff statistics are computed against and what `branch` must differ from to be pushed:
   * default `startSha`; conflict-fix tasks use `origin/<baseBranch>` (their branch carries the original
   * task's work on top of the base, not just the resolution).
   */
  diffFrom?: string;
  /** The worker branch handed back. */
  branch: string;
  /** The task's base branch: `refs/remotes/origin/<baseBranch>` is the bundle's prerequisite. */
  baseBranch: string;
  /** Where `git bundle` of the branch is written (its directory is created). */
  bundlePath: string;
  /** Subject of the safety-net commit for whatever the agent left uncommitted. */
  commitMessage: string;
}

/**
 * After the agent: excludes artifacts, commits whatever is left uncommitted, computes the diff of `branch`
 * against `diffFrom` (default `startSha`; artifacts excluded), looks for conflict markers in the changed
 * files, and — when `branch` differs from `diffFrom` and has no conflict markers — writes `git bundle` of
 * `refs/heads/<branch>` with `refs/remotes/origin/<baseBranch>` as prerequisite to `bundlePath`. The worker
 * never pushes (the sandbox holds no credentials and has no network): the provider takes the bundle out and
 * pushes the branch itself. `head` is the bundled commit. `conflictMarkers` lists the changed files with a
 * line starting with `<<<<<<< ` or `>>>>>>> ` (nothing is bundled then). `concerns` reports a failed bundle
 * (the handoff then carries no `head`) and an agent that left another branch checked out. Throws GitError /
 * GitRefNotFoundError for failures other than the bundle.
 */
export async function finalizeRepo(
  opts: FinalizeOptions,
): Promise<RepoOutcome & { concerns: string[]; conflictMarkers: string[] }> {
  await excludeArtifacts(opts.repoDir);
  await commitAll(opts.repoDir, opts.commitMessage);
  const concerns: string[] = [];
  const onBranch = await currentBranch(opts.repoDir);
  if (onBranch !== opts.branch) {
    concerns.push(
      `the agent left ${onBranch ?? "a detached HEAD"} checked out; only commits on ${opts.branch} count`,
    );
  }
  const head = await headSha(opts.repoDir, `refs/heads/${opts.branch}`);
  const from = await headSha(opts.repoDir, opts.diffFrom ?? opts.startSha);
  const stats = await diffStats(opts.repoDir, from, head);
  const changed = new Set(stats.filesChanged);
  // The working tree is the committed branch here (unless the agent switched branches, reported above).
  const conflictMarkers = (await findConflictMarkers(opts.repoDir)).filter((f) => changed.has(f));
  const outcome: RepoOutcome & { concerns: string[]; conflictMarkers: string[] } = {
    filesChanged: stats.filesChanged,
    linesAdded: stats.linesAdded,
    linesRemoved: stats.linesRemoved,
    filesCreated: stats.filesCreated,
    filesModified: stats.filesModified,
    concerns,
    conflictMarkers,
  };
  if (head === from || conflictMarkers.length > 0) return outcome;
  try {
    await mkdir(dirname(opts.bundlePath), { recursive: true });
    await bundleBranch(opts.repoDir, opts.bundlePath, opts.branch, `refs/remotes/origin/${opts.baseBranch}`);
    outcome.head = head;
  } catch (err) {
    outcome.concerns.push(
      `bundle of ${opts.branch} failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return outcome;
}
