import { appendFile, mkdir, readFile, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { commitAll, currentBranch, diffStats, headSha, pushBranch } from "@longshot/git";
import type { RepoOutcome } from "../domain/handoff.ts";

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

/** Options of {@link finalizeRepo}. */
export interface FinalizeOptions {
  repoDir: string;
  /** Sha of HEAD when the worker started. */
  startSha: string;
  /** The worker branch to push (force-pushed: it belongs to this task only). */
  branch: string;
  /** The task's base branch; never force-pushed (pushBranch refuses). */
  baseBranch: string;
  /** Subject of the safety-net commit for whatever the agent left uncommitted. */
  commitMessage: string;
}

/**
 * After the agent: excludes artifacts, commits whatever is left uncommitted, computes the diff of `branch`
 * against `startSha` (artifacts excluded), and force-pushes `branch` when it moved. `concerns` reports a
 * failed push (the handoff then carries no `head`) and an agent that left another branch checked out.
 * Throws GitError / GitRefNotFoundError for failures other than the push.
 */
export async function finalizeRepo(opts: FinalizeOptions): Promise<RepoOutcome & { concerns: string[] }> {
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
  const stats = await diffStats(opts.repoDir, opts.startSha, head);
  const outcome: RepoOutcome & { concerns: string[] } = {
    filesChanged: stats.filesChanged,
    linesAdded: stats.linesAdded,
    linesRemoved: stats.linesRemoved,
    filesCreated: stats.filesCreated,
    filesModified: stats.filesModified,
    concerns,
  };
  if (head === opts.startSha) return outcome;
  try {
    await pushBranch(opts.repoDir, opts.branch, { force: true, base: opts.baseBranch });
    outcome.head = head;
  } catch (err) {
    outcome.concerns.push(
      `push of ${opts.branch} failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return outcome;
}
