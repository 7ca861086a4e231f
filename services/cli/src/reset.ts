import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { RunRecord } from "./state.ts";

const run = promisify(execFile);

async function git(repo: string, ...args: string[]): Promise<string> {
  const { stdout } = await run("git", ["-C", repo, ...args], {
    env: { ...process.env, GIT_TERMINAL_PROMPT: "0" },
  });
  return stdout.trim();
}

/** True for a git URL (`scheme://…` or `user@host:path`), false for a local path. */
export function isGitUrl(repo: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) || /^[^/\s]+@[^/\s]+:/.test(repo);
}

/** The commit `branch` of a local repository points at, or undefined (no such branch, not a repository). */
export async function branchHead(repo: string, branch: string): Promise<string | undefined> {
  try {
    return await git(repo, "rev-parse", "--verify", "--quiet", `refs/heads/${branch}^{commit}`);
  } catch {
    return undefined;
  }
}

/** What {@link resetToRunStart} did. */
export interface ResetResult {
  /** The run whose start it went back to. */
  runId: string;
  from: string;
  to: string;
  /** The ref that keeps the old tip (undefined when the branch was already there). */
  keptAt?: string;
}

/** Thrown when `--reset` cannot be done, saying why. */
export class ResetError extends Error {
  override readonly name = "ResetError";
}

/**
 * `--reset`: moves `baseBranch` of the local repository `repo` back to the commit the latest recorded run of the
 * same repository and branch started from, without destroying work: the old tip stays reachable under
 * `refs/longshot/pre-reset/<branch>/<time>`; a checked-out branch is moved with `git reset --keep` (refuses when
 * local changes would be overwritten). A git URL is refused: a remote's base branch is never touched.
 * @throws ResetError when there is no recorded start, the target is a URL, or git refuses.
 */
export async function resetToRunStart(
  repo: string,
  baseBranch: string,
  records: RunRecord[],
  now = new Date(),
): Promise<ResetResult> {
  if (isGitUrl(repo))
    throw new ResetError(
      `--reset works on a local repository only: the base branch of ${repo} is never touched`,
    );
  const last = records.filter((r) => r.repo === repo && r.baseBranch === baseBranch && r.startSha).at(-1);
  if (!last)
    throw new ResetError(`no earlier run of ${repo} (branch ${baseBranch}) is recorded; nothing to reset to`);
  const to = last.startSha!;
  const from = await branchHead(repo, baseBranch);
  if (!from) throw new ResetError(`${repo} has no branch ${baseBranch}`);
  if (from === to) return { runId: last.runId, from, to };
  try {
    await git(repo, "cat-file", "-e", `${to}^{commit}`);
  } catch {
    throw new ResetError(`${repo} no longer has commit ${to} (the start of ${last.runId})`);
  }
  const keptAt = `refs/longshot/pre-reset/${baseBranch}/${now.toISOString().replace(/[:.]/g, "-")}`;
  await git(repo, "update-ref", keptAt, from);
  let checkedOut = false;
  try {
    checkedOut = (await git(repo, "symbolic-ref", "-q", "HEAD")) === `refs/heads/${baseBranch}`;
  } catch {
    checkedOut = false; // detached HEAD or a bare repository
  }
  try {
    if (checkedOut) await git(repo, "reset", "-q", "--keep", to);
    else await git(repo, "update-ref", `refs/heads/${baseBranch}`, to, from);
  } catch (e) {
    throw new ResetError(
      `git refused to move ${baseBranch} back to ${to.slice(0, 8)}: ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message} (the old tip is kept at ${keptAt})`,
    );
  }
  return { runId: last.runId, from, to, keptAt };
}
