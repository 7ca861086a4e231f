import { remoteBranchHead } from "@longshot/git";

/**
 * Checks that `repo` is reachable and has `baseBranch` (`git ls-remote`, 30 s timeout).
 * Returns a human-readable problem, or undefined when fine.
 */
export async function checkRepo(repo: string, baseBranch: string): Promise<string | undefined> {
  const r = await remoteBranchHead(repo, baseBranch);
  if (!r.ok) return `not a reachable git repository: ${r.error}`;
  return r.sha ? undefined : `branch '${baseBranch}' does not exist in ${repo}`;
}
