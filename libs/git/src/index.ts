/**
 * @longshot/git: the git operations Longshot needs (clone, commit, push, diff stats, merge strategies),
 * on the git CLI. Every function takes absolute directories. Commits use a per-command identity
 * (GIT_COMMIT_NAME / GIT_COMMIT_EMAIL, default "Longshot" <longshot@localhost>) that is never written to
 * git config; credentials are passed only through `env` options, never argv or config.
 */
export {
  assertTreePath,
  CommitReadError,
  type CommitReader,
  createCommitReader,
  type TreeEntry,
} from "./at-commit.ts";
export {
  type BuildCandidateOptions,
  buildCandidate,
  type CandidateFailureCode,
  type CandidateResult,
  existingCommits,
  fetchRemoteBranch,
  fetchRemoteBranches,
  pushCommitToBase,
  storeCommit,
  treeOf,
} from "./candidate.ts";
export { type DiffStats, diffStats, isArtifactPath } from "./diff.ts";
export { GitError, GitPushError, GitRefNotFoundError, GitUsageError } from "./errors.ts";
export { commitIdentity, type GitCappedResult, type GitEnvOptions, redact, runGitCapped } from "./exec.ts";
export {
  conflictedFiles,
  MERGE_STRATEGIES,
  type MergeBranchOptions,
  type MergeFailureCode,
  type MergeResult,
  type MergeStrategy,
  mergeBranch,
} from "./merge.ts";
export { createMirrors, gitTokenEnv, type RepoMirror } from "./mirror.ts";
export {
  branchExists,
  bundleBranch,
  type CommitInfo,
  checkoutNewBranch,
  cloneRepo,
  commitAll,
  commitExists,
  currentBranch,
  fetch,
  findConflictMarkers,
  headSha,
  initRepo,
  isAncestor,
  listTrackedFiles,
  localRepoPath,
  type PushBaseResult,
  prepareTargetRepo,
  pushBase,
  pushBranch,
  recentCommits,
  type TargetRepoKind,
} from "./repo.ts";
export { createRepoReader, type RepoReader, type RepoSnapshot, remoteBranchHead } from "./snapshot.ts";
