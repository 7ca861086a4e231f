import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type CommitReader, createCommitReader } from "./at-commit.ts";
import { git } from "./exec.ts";
import { type CommitInfo, cloneRepo, fetch, headSha, listTrackedFiles, recentCommits } from "./repo.ts";

/** A target repository's base branch as planners read it. `docs` holds the files planners treat as input. */
export interface RepoSnapshot {
  head: string;
  /** Tracked files (git ls-files). */
  files: string[];
  /** The last 40 commits, newest first. */
  commits: CommitInfo[];
  docs: { spec?: string; features?: string; agents?: string; decisions?: string };
}

const DOCS = {
  spec: "SPEC.md",
  features: "FEATURES.json",
  agents: "AGENTS.md",
  decisions: "DECISIONS.md",
} as const;

/**
 * Reads target repositories through private clones under `<rootDir>/<sha1(repo)[0..12]>`, fetched and checked
 * out (detached) at `origin/<baseBranch>` before every read; the target itself is never touched. Reads of one
 * clone are serialized. Used by the planner and the subplanner.
 */
export function createRepoReader(rootDir: string) {
  const locks = new Map<string, Promise<unknown>>();
  const cloneDir = (repo: string) =>
    join(rootDir, createHash("sha1").update(repo).digest("hex").slice(0, 12));
  const read = async (repo: string, baseBranch: string): Promise<RepoSnapshot> => {
    const dir = cloneDir(repo);
    if (!existsSync(join(dir, ".git"))) await cloneRepo(repo, dir);
    else await fetch(dir);
    await git(dir, ["checkout", "-q", "--detach", "-f", `origin/${baseBranch}`]);
    const [head, files, commits, ...docs] = await Promise.all([
      headSha(dir),
      listTrackedFiles(dir),
      recentCommits(dir, 40),
      ...Object.values(DOCS).map((f) =>
        existsSync(join(dir, f)) ? readFile(join(dir, f), "utf8") : undefined,
      ),
    ]);
    const snapshotDocs: RepoSnapshot["docs"] = {};
    Object.keys(DOCS).forEach((k, i) => {
      if (docs[i] !== undefined) snapshotDocs[k as keyof typeof DOCS] = docs[i];
    });
    return { head, files, commits, docs: snapshotDocs };
  };
  return {
    /** Snapshot of `repo` at `origin/<baseBranch>`. @throws GitError when the repository or branch is unreachable. */
    snapshot(repo: string, baseBranch: string): Promise<RepoSnapshot> {
      const next = (locks.get(repo) ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => read(repo, baseBranch));
      locks.set(repo, next);
      return next;
    },
    /**
     * Read-only access to commit `sha` (e.g. a snapshot's `head`) of `repo`'s clone, from git objects only, so
     * later snapshots (which fetch and check out) do not change what it reads. Call after a snapshot of `repo`.
     * @throws GitUsageError when `sha` is not a full commit sha.
     */
    atCommit(repo: string, sha: string): CommitReader {
      return createCommitReader(cloneDir(repo), sha);
    },
  };
}

/** A reader made by {@link createRepoReader}. */
export type RepoReader = ReturnType<typeof createRepoReader>;

/**
 * Reads the head of `branch` in `repo` without cloning (`git ls-remote --heads`, 30 s timeout, no prompts).
 * `sha` is undefined when the repository answers but has no such branch; `error` is the first line git
 * printed when the repository could not be read.
 */
export async function remoteBranchHead(
  repo: string,
  branch: string,
): Promise<{ ok: true; sha?: string } | { ok: false; error: string }> {
  try {
    const out = await git(process.cwd(), ["ls-remote", "--heads", "--", repo, branch], {
      timeoutMs: 30_000,
      env: { GIT_TERMINAL_PROMPT: "0" },
    });
    const line = out.split("\n").find((l) => l.endsWith(`refs/heads/${branch}`));
    const sha = line?.split(/\s+/)[0];
    return sha ? { ok: true, sha } : { ok: true };
  } catch (e) {
    return {
      ok: false,
      error:
        String((e as Error).message)
          .trim()
          .split("\n")[0] ?? "unknown error",
    };
  }
}
