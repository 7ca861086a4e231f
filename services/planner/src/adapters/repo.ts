import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { cloneRepo, fetch, headSha, listTrackedFiles, recentCommits } from "@longshot/git";
import type { RepoSnapshot } from "../domain/messages.ts";

const run = promisify(execFile);

/**
 * Reads the target repository as the planner sees it: a private clone under `<stateDir>/planner/<hash>`,
 * fetched and checked out (detached) at `origin/<baseBranch>` before every read. Reads never touch the
 * target itself. Serialized per clone (one read at a time).
 */
export function createRepoReader(stateDir: string) {
  const locks = new Map<string, Promise<unknown>>();
  const read = async (repo: string, baseBranch: string): Promise<RepoSnapshot> => {
    const dir = join(stateDir, "planner", createHash("sha1").update(repo).digest("hex").slice(0, 12));
    if (!existsSync(join(dir, ".git"))) {
      await mkdir(join(stateDir, "planner"), { recursive: true });
      await cloneRepo(repo, dir);
    } else {
      await fetch(dir);
    }
    await run("git", ["checkout", "-q", "--detach", "-f", `origin/${baseBranch}`], { cwd: dir });
    const doc = async (name: string) => {
      const p = join(dir, name);
      return existsSync(p) ? readFile(p, "utf8") : undefined;
    };
    const [head, files, commits, spec, features, agents, decisions] = await Promise.all([
      headSha(dir),
      listTrackedFiles(dir),
      recentCommits(dir, 40),
      doc("SPEC.md"),
      doc("FEATURES.json"),
      doc("AGENTS.md"),
      doc("DECISIONS.md"),
    ]);
    const docs: RepoSnapshot["docs"] = {};
    if (spec !== undefined) docs.spec = spec;
    if (features !== undefined) docs.features = features;
    if (agents !== undefined) docs.agents = agents;
    if (decisions !== undefined) docs.decisions = decisions;
    return { head, files, commits, docs };
  };
  return {
    /** Snapshot of `repo` at `origin/<baseBranch>`. @throws GitError when the repo or branch is unreachable. */
    snapshot(repo: string, baseBranch: string): Promise<RepoSnapshot> {
      const prev = locks.get(repo) ?? Promise.resolve();
      const next = prev.catch(() => undefined).then(() => read(repo, baseBranch));
      locks.set(repo, next);
      return next;
    },
  };
}
export type RepoReader = ReturnType<typeof createRepoReader>;

/**
 * Checks that `repo` is reachable and has `baseBranch` (`git ls-remote --heads`, 30 s timeout).
 * Returns a human-readable problem, or undefined when fine.
 */
export async function checkRepo(repo: string, baseBranch: string): Promise<string | undefined> {
  try {
    const { stdout } = await run("git", ["ls-remote", "--heads", "--", repo, baseBranch], {
      timeout: 30_000,
      env: { ...process.env, GIT_TERMINAL_PROMPT: "0" },
    });
    if (!stdout.trim()) return `branch '${baseBranch}' does not exist in ${repo}`;
    return undefined;
  } catch (e) {
    const msg = String((e as { stderr?: string }).stderr || (e as Error).message)
      .trim()
      .split("\n")[0];
    return `not a reachable git repository: ${msg}`;
  }
}
