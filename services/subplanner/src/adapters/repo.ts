import { join } from "node:path";
import { createRepoReader as createGitRepoReader } from "@longshot/git";
import type { RepoSnapshot } from "../domain/messages.ts";

/**
 * The subplanner's view of target repositories: the shared reader of `@longshot/git` over private clones
 * under `<stateDir>/subplanner/`, narrowed to what a decomposition needs (head, files, commits, FEATURES.json).
 */
export function createRepoReader(stateDir: string) {
  const reader = createGitRepoReader(join(stateDir, "subplanner"));
  return {
    /** @throws GitError when the repository or the branch is unreachable. */
    async snapshot(repo: string, baseBranch: string): Promise<RepoSnapshot> {
      const s = await reader.snapshot(repo, baseBranch);
      return {
        head: s.head,
        files: s.files,
        commits: s.commits,
        ...(s.docs.features !== undefined ? { features: s.docs.features } : {}),
      };
    },
  };
}

/** The subplanner's view of target repositories (see {@link createRepoReader}). */
export type RepoReader = ReturnType<typeof createRepoReader>;
