import type { SweepCheck } from "@longshot/contracts";
import { type CheckOverrides, checkCommit, type SandboxProvider } from "@longshot/sandbox";

/** Result of one sweep of a base branch. */
export interface SweepResult {
  sha: string;
  green: boolean;
  checks: SweepCheck[];
  conflictFiles: string[];
  durationMs: number;
}

/** Options of {@link createSweeper}. */
export interface SweeperOptions {
  /** Where checks run (the configured sandbox provider; never the reconciler's host). */
  provider: SandboxProvider;
  overrides: CheckOverrides;
  /** Timeout of each check, in ms. */
  timeoutMs: number;
  /** Whether the install check may use the network (SWEEP_INSTALL_NETWORK); the others never can. */
  installNetwork: boolean;
}

/**
 * A sweep of `baseBranch` of `repo`, or of the commit `at` of its history (a re-run of an earlier sweep).
 * See {@link createSweeper}.
 */
export type Sweeper = (repo: string, baseBranch: string, at?: string) => Promise<SweepResult>;

/**
 * The reconciler's sweeps. A sweep of `baseBranch` of `repo`:
 * 1. syncs the reconciler's private mirror of the target and resolves the branch's head (the sha swept), or
 *    takes `at`, a commit of the branch's history;
 * 2. runs the target's check set on it (`checkCommit` of @longshot/sandbox, the same checks the merge queue
 *    runs before landing: install when it has dependencies, build, typecheck, tests, operator overrides, then
 *    conflict markers) in a sandbox of the configured provider — agent-written code and its install scripts
 *    never run on the host.
 * Green when every check passed and no markers were found.
 * @throws GitError when the target or the branch cannot be fetched (retryable for the caller).
 */
export function createSweeper(options: SweeperOptions): Sweeper {
  return async (repo, baseBranch, at) => {
    const started = Date.now();
    const mirror = options.provider.mirror(repo);
    await mirror.sync();
    const sha = at ?? (await mirror.resolve(`refs/heads/${baseBranch}`));
    const r = await checkCommit(
      options.provider,
      { repo, ref: `refs/heads/${baseBranch}`, commit: sha },
      {
        overrides: options.overrides,
        timeoutMs: options.timeoutMs,
        installNetwork: options.installNetwork,
        labels: { purpose: "sweep" },
      },
    );
    return {
      sha,
      green: r.green,
      checks: r.checks,
      conflictFiles: r.conflictFiles,
      durationMs: Date.now() - started,
    };
  };
}

/**
 * The current head of `baseBranch` in `repo` (through the provider's mirror, with its credentials), or
 * undefined when it cannot be read (stale-result check).
 */
export function createHeadReader(provider: SandboxProvider) {
  return async (repo: string, baseBranch: string): Promise<string | undefined> => {
    try {
      const mirror = provider.mirror(repo);
      await mirror.sync();
      return await mirror.resolve(`refs/heads/${baseBranch}`);
    } catch {
      return undefined;
    }
  };
}
