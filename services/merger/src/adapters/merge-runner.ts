import { createHash, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Handoff } from "@longshot/contracts";
import {
  cloneRepo,
  commitExists,
  fetch,
  type GitEnvOptions,
  headSha,
  isAncestor,
  localRepoPath,
  type MergeResult,
  type MergeStrategy,
  mergeBranch,
  prepareTargetRepo,
  pushBase,
} from "@longshot/git";
import type { Logger } from "@longshot/log";
import { decide } from "../domain/decide.ts";
import { branchOf, mergedRecordKey, repoKey } from "../domain/keys.ts";
import type { MergedRecordStore } from "./merged-records.ts";

/**
 * What happened to one handoff. `merged`: the base branch now ends at `sha` (pushed); `attempts` counts
 * merge attempts (conflict retries and redos after a rejected push included); `strategy` is the one that
 * landed it (a fast-forward that was not possible is retried as a rebase). `conflict`: still conflicting
 * after every attempt. `skipped`: nothing to merge, or already merged. `failed`: a deterministic failure
 * (missing branch, rebase failure that is not a conflict).
 */
export type MergeOutcome =
  | { kind: "merged"; sha: string; rebased: boolean; attempts: number; strategy: MergeStrategy }
  | { kind: "conflict"; files: string[]; attempts: number }
  | { kind: "skipped"; reason: string }
  /** The task's changes are already on the base (a redelivery, e.g. after a crash): `sha` = a base commit containing them. */
  | { kind: "already-merged"; sha: string; reason: string }
  | { kind: "failed"; reason: string };

/**
 * The base branch kept moving: the push was rejected `pushAttempts` times in a row. Retryable (redeliver
 * the handoff later).
 */
export class MergeContentionError extends Error {
  override name = "MergeContentionError";
  readonly pushAttempts: number;
  constructor(repo: string, base: string, pushAttempts: number, options?: { cause?: unknown }) {
    super(`push of ${base} to ${repo} rejected ${pushAttempts} times: the base keeps moving`, options);
    this.pushAttempts = pushAttempts;
  }
}

/** Configuration of {@link createMergeRunner}. */
export interface MergeRunnerOptions {
  /** Root of the merger's state; clones live in `<stateDir>/merger/<sha1(repo)[0:12]>`. */
  stateDir: string;
  /** The configured strategy (env MERGE_STRATEGY; default rebase). */
  strategy: MergeStrategy;
  log: Pick<Logger, "info" | "warn" | "debug">;
  /** Record of merged tasks (NATS KV in production). */
  records: MergedRecordStore;
  /** Merge attempts for a conflict (the first try and its retries). Default 3. */
  maxConflictAttempts?: number;
  /** Pushes of the base per handoff before giving up with {@link MergeContentionError}. Default 5. */
  maxPushAttempts?: number;
  /** Extra environment for git network commands (credentials, e.g. GIT_ASKPASS); never argv or config. */
  gitEnv?: GitEnvOptions["env"];
  /** Called before every push of the base (tests use it to move the target meanwhile). */
  beforePush?: (context: { repo: string; base: string; sha: string; attempt: number }) => Promise<void>;
}

/** Lands handoffs on their target repository's base branch; see {@link createMergeRunner}. */
export interface MergeRunner {
  /**
   * Merges one handoff (serialized per target repository, safe to call concurrently). Throws for
   * transient failures worth a redelivery: GitError (network, git crash), GitPushError (the target refused
   * the push, e.g. a dirty working tree), MergeContentionError, and errors of the record store.
   */
  merge(handoff: Handoff): Promise<MergeOutcome>;
  /** The working clone directory used for `repo`. */
  workDirFor(repo: string): string;
}

/**
 * Creates the merge runner: one working clone per target repository (created on first use after
 * `prepareTargetRepo` on the target), `mergeBranch` + `pushBase` with these rules:
 * - idempotent per task: skipped when the record store has the task or its `head` is already on the base;
 * - a conflict is retried (fetch, redo on the new base) until `maxConflictAttempts`, then reported;
 * - a rejected push (the base moved) redoes the merge from the new tip, at most `maxPushAttempts` pushes;
 * - the base is never force-pushed, so its previous tip is always an ancestor of the new one.
 */
export function createMergeRunner(options: MergeRunnerOptions): MergeRunner {
  const { stateDir, log, records } = options;
  const maxConflictAttempts = options.maxConflictAttempts ?? 3;
  const maxPushAttempts = options.maxPushAttempts ?? 5;
  const net: GitEnvOptions = options.gitEnv ? { env: options.gitEnv } : {};
  const locks = new Map<string, Promise<unknown>>();
  const prepared = new Set<string>();

  const workDirFor = (repo: string): string =>
    join(stateDir, "merger", createHash("sha1").update(repoKey(repo)).digest("hex").slice(0, 12));

  /** Runs `fn` after every earlier call for the same repository has settled. */
  function serialized<R>(repo: string, fn: () => Promise<R>): Promise<R> {
    const key = repoKey(repo);
    const previous = locks.get(key) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    locks.set(key, tail);
    void tail.then(() => {
      if (locks.get(key) === tail) locks.delete(key);
    });
    return run;
  }

  async function ensureClone(repo: string): Promise<string> {
    const key = repoKey(repo);
    if (!prepared.has(key)) {
      const kind = await prepareTargetRepo(repo);
      prepared.add(key);
      log.debug({ repo, kind }, "target repository prepared");
    }
    const dir = workDirFor(repo);
    if (existsSync(join(dir, ".git"))) {
      try {
        await headSha(dir);
        return dir;
      } catch {
        log.warn({ repo, dir }, "working clone unusable, cloning again");
      }
    }
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(stateDir, "merger"), { recursive: true });
    const tmp = `${dir}.tmp-${randomUUID().slice(0, 8)}`;
    try {
      await cloneRepo(localRepoPath(repo) ?? repo, tmp, net);
      await rename(tmp, dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    log.info({ repo, dir }, "working clone created");
    return dir;
  }

  /** Fetches base and branch; true when `head` is known and already an ancestor of origin's base. */
  async function headOnBase(dir: string, base: string, branch: string, head: string): Promise<boolean> {
    await fetch(dir, [`+refs/heads/${base}:refs/remotes/origin/${base}`], net);
    // The branch may be gone (deleted after an earlier merge); its head may still be known locally.
    await fetch(dir, [`+refs/heads/${branch}:refs/remotes/origin/${branch}`], net).catch(() => undefined);
    if (!(await commitExists(dir, head))) return false;
    return isAncestor(dir, head, `refs/remotes/origin/${base}`);
  }

  async function mergeLocked(handoff: Handoff): Promise<MergeOutcome> {
    const key = mergedRecordKey(handoff);
    const { repo, baseBranch: base } = handoff.task;
    const branch = branchOf(handoff);
    const head = handoff.head ?? "";
    const ctx = { runId: handoff.runId, taskId: handoff.taskId, repo, branch, base };

    // Re-read inside the lock: a concurrent delivery of the same task may just have merged it.
    const recordedSha = await records.get(key);
    const early = decide(handoff, { recordedSha });
    if (early.kind === "already-merged" && recordedSha)
      return { kind: "already-merged", sha: recordedSha, reason: early.reason };
    if (early.kind !== "merge") return { kind: "skipped", reason: early.reason };

    const dir = await ensureClone(repo);
    const onBase = await headOnBase(dir, base, branch, head).catch((error: unknown) => {
      log.warn({ ...ctx, err: error }, "could not check whether the head is on the base");
      return false;
    });
    const decision = decide(handoff, { recordedSha, headOnBase: onBase });
    if (decision.kind !== "merge") {
      const baseSha = await headSha(dir, `refs/remotes/origin/${base}`);
      await records.put(key, baseSha);
      return decision.kind === "already-merged"
        ? { kind: "already-merged", sha: baseSha, reason: decision.reason }
        : { kind: "skipped", reason: decision.reason };
    }

    const message = `Merge ${branch} (task ${handoff.taskId})\n\n${handoff.task.description.slice(0, 500)}`;
    let strategy = options.strategy;
    let attempts = 0;
    let mergeTries = 0;
    let pushes = 0;
    for (;;) {
      attempts += 1;
      mergeTries += 1;
      const result: MergeResult = await mergeBranch(dir, { branch, base, strategy, message, ...net });
      switch (result.kind) {
        case "noop": {
          const baseSha = await headSha(dir, `refs/remotes/origin/${base}`);
          await records.put(key, baseSha);
          return { kind: "already-merged", sha: baseSha, reason: result.reason };
        }
        case "failed": {
          if (result.code === "not-fast-forward" && mergeTries < maxConflictAttempts) {
            log.info({ ...ctx, attempts }, "fast-forward not possible, retrying as a rebase");
            strategy = "rebase";
            continue;
          }
          return { kind: "failed", reason: result.reason };
        }
        case "conflict": {
          if (mergeTries < maxConflictAttempts) {
            log.info({ ...ctx, attempts, files: result.files }, "merge conflict, fetching and retrying");
            continue;
          }
          return { kind: "conflict", files: result.files, attempts };
        }
        case "merged": {
          pushes += 1;
          await options.beforePush?.({ repo, base, sha: result.sha, attempt: pushes });
          const push = await pushBase(dir, base, net);
          if (push.ok) {
            await records.put(key, result.sha);
            log.info({ ...ctx, sha: result.sha, strategy, rebased: result.rebased, attempts }, "merged");
            return { kind: "merged", sha: result.sha, rebased: result.rebased, attempts, strategy };
          }
          if (pushes >= maxPushAttempts) throw new MergeContentionError(repo, base, pushes);
          log.info({ ...ctx, attempts, reason: push.reason }, "push rejected, the base moved; merging again");
          // A moved base is a new situation: conflicts get their full retry budget again.
          mergeTries = 0;
          continue;
        }
      }
    }
  }

  return {
    workDirFor,
    async merge(handoff) {
      // Cheap checks first, without waiting for the repository's lock or touching git.
      const recordedSha = await records.get(mergedRecordKey(handoff));
      const early = decide(handoff, { recordedSha });
      if (early.kind === "already-merged" && recordedSha)
        return { kind: "already-merged", sha: recordedSha, reason: early.reason };
      if (early.kind !== "merge") return { kind: "skipped", reason: early.reason };
      return serialized(handoff.task.repo, () => mergeLocked(handoff));
    },
  };
}
