import { join } from "node:path";
import { type CommitReader, createRepoReader as createGitRepoReader } from "@longshot/git";
import type { RepoSnapshot } from "../domain/messages.ts";

/**
 * The subplanner's view of target repositories: the shared reader of `@longshot/git` over private clones
 * under `<stateDir>/subplanner/`, narrowed to what a decomposition needs (head, files, commits, FEATURES.json), and
 * read-only access to a snapshot's commit for the model's tools.
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
    /**
     * Read-only access to commit `sha` (a snapshot's head) of `repo`'s clone, for the model's repository tools.
     * @throws GitUsageError when `sha` is not a full commit sha.
     */
    atCommit(repo: string, sha: string): CommitReader {
      return reader.atCommit(repo, sha);
    },
  };
}

/** The subplanner's view of target repositories (see {@link createRepoReader}). */
export type RepoReader = ReturnType<typeof createRepoReader>;
