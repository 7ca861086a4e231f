import { execFile } from "node:child_process";
import type { Task } from "@longshot/contracts";
import { checkoutNewBranch, commitIdentity, conflictedFiles } from "@longshot/git";

/** Most time one git command of the conflict-fix setup may take, in ms. */
const GIT_TIMEOUT_MS = 5 * 60_000;

/** Thrown when the conflict-fix rebase fails for another reason than conflicts. */
export class ConflictSetupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConflictSetupError";
  }
}

/**
 * Outcome of {@link prepareConflictFix}: `conflicts` lists the unmerged paths the rebase stopped on
 * (repo-relative, sorted; the rebase is left in progress), `[]` when the rebase went through cleanly.
 */
export interface ConflictFixSetup {
  conflicts: string[];
}

/**
 * Prepares a fresh clone (`origin` = the target) for a conflict-fix task: checks out
 * `origin/<task.conflictBranch>` as the new local branch `task.branch`, then runs
 * `git rebase origin/<task.baseBranch>`. When the rebase stops on conflicts it is left in progress with the
 * conflicts in the tree (never aborted): resolving them is the worker's job. Commits replayed by the rebase
 * get the library's commit identity (`commitIdentity`) as committer, passed per command.
 * @throws GitError when the conflict branch does not exist on origin or `task.branch` exists;
 * ConflictSetupError when `task.conflictBranch` is unset or the rebase fails without conflicts.
 */
export async function prepareConflictFix(repoDir: string, task: Task): Promise<ConflictFixSetup> {
  if (task.conflictBranch === undefined)
    throw new ConflictSetupError(`task ${task.id} has no conflictBranch`);
  await checkoutNewBranch(repoDir, task.branch, `refs/remotes/origin/${task.conflictBranch}`);
  const { name, email } = commitIdentity();
  const args = [
    "-c",
    `user.name=${name}`,
    "-c",
    `user.email=${email}`,
    "-c",
    "commit.gpgsign=false",
    "rebase",
    `refs/remotes/origin/${task.baseBranch}`,
  ];
  const result = await runGit(repoDir, args);
  if (result.code === 0) return { conflicts: [] };
  const conflicts = await conflictedFiles(repoDir);
  if (conflicts.length === 0) {
    const detail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(0, 4).join(" | ");
    throw new ConflictSetupError(
      `git rebase origin/${task.baseBranch} failed without conflicts (exit ${result.code}): ${detail}`,
    );
  }
  return { conflicts };
}

/** Runs git in `cwd` without an editor or prompts; resolves with the exit code whatever it is. */
function runGit(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GIT_EDITOR: "true",
    GIT_TERMINAL_PROMPT: "0",
    LC_ALL: "C",
  };
  for (const name of ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"]) delete env[name];
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      { cwd, env, timeout: GIT_TIMEOUT_MS, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") {
          reject(new ConflictSetupError(`git ${args.join(" ")} failed to run`, { cause: error }));
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}
