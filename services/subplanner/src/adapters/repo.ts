import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { cloneRepo, fetch, headSha, listTrackedFiles, recentCommits } from "@longshot/git";
import type { RepoSnapshot } from "../domain/messages.ts";

const run = promisify(execFile);

/**
 * Reads the target repository as the subplanner sees it: a private clone under
 * `<stateDir>/subplanner/<sha1(repo)[0..12]>`, fetched and checked out (detached) at `origin/<baseBranch>`
 * before every read. Never touches the target itself. Reads of one clone are serialized.
 */
export function createRepoReader(stateDir: string) {
  const locks = new Map<string, Promise<unknown>>();
  const read = async (repo: string, baseBranch: string): Promise<RepoSnapshot> => {
    const dir = join(stateDir, "subplanner", createHash("sha1").update(repo).digest("hex").slice(0, 12));
    if (!existsSync(join(dir, ".git"))) await cloneRepo(repo, dir);
    else await fetch(dir);
    await run("git", ["checkout", "-q", "--detach", "-f", `origin/${baseBranch}`], { cwd: dir });
    const featuresPath = join(dir, "FEATURES.json");
    const [head, files, commits, features] = await Promise.all([
      headSha(dir),
      listTrackedFiles(dir),
      recentCommits(dir, 40),
      existsSync(featuresPath) ? readFile(featuresPath, "utf8") : Promise.resolve(undefined),
    ]);
    return { head, files, commits, ...(features !== undefined ? { features } : {}) };
  };
  return {
    /**
     * Snapshot of `repo` at `origin/<baseBranch>`: head sha, tracked files, last 40 commits, FEATURES.json.
     * @throws GitError when the repository or the branch is unreachable.
     */
    snapshot(repo: string, baseBranch: string): Promise<RepoSnapshot> {
      const prev = locks.get(repo) ?? Promise.resolve();
      const next = prev.catch(() => undefined).then(() => read(repo, baseBranch));
      locks.set(repo, next);
      return next;
    },
  };
}

/** The subplanner's view of target repositories (see {@link createRepoReader}). */
export type RepoReader = ReturnType<typeof createRepoReader>;
