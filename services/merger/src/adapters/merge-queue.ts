import { createHash, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Handoff, SweepCheck } from "@longshot/contracts";
import {
  buildCandidate,
  type CandidateResult,
  cloneRepo,
  commitExists,
  existingCommits,
  fetchRemoteBranch,
  fetchRemoteBranches,
  type GitEnvOptions,
  headSha,
  localRepoPath,
  type MergeStrategy,
  prepareTargetRepo,
  pushCommitToBase,
  storeCommit,
} from "@longshot/git";
import type { Logger } from "@longshot/log";
import { type CheckOverrides, checkCommit, type SandboxProvider } from "@longshot/sandbox";
import { decide } from "../domain/decide.ts";
import { branchOf, mergedRecordKey, repoKey } from "../domain/keys.ts";
import {
  baseFetched,
  buildEnded,
  built,
  emptyLane,
  type LanePolicy,
  type LaneState,
  landed,
  nextAction,
  pushRefused,
  rejected,
  remove,
  type Slot,
  submit,
  unverified,
  verdict,
  verifying,
} from "../domain/lane.ts";
import type { MergedRecordStore } from "./merged-records.ts";

/**
 * What happened to one handoff. `merged`: the base branch now contains it at `sha` (pushed; with verification
 * the candidate commit whose tree `tree` passed the checks), `batchSize` candidates landed in the same push,
 * `attempts` counts the builds of the candidate (conflict retries and rebuilds after a moved base included),
 * `waitedMs` is the time from the handoff to the landing. `rejected`: its candidate failed the checks while
 * everything ahead of it passed; nothing of it landed. `conflict`: it does not apply on the base after every
 * attempt. `skipped`: nothing to merge. `already-merged`: its changes are on the base already (a redelivery).
 * `failed`: a deterministic failure (e.g. its branch is gone).
 */
export type MergeOutcome =
  | {
      kind: "merged";
      sha: string;
      rebased: boolean;
      attempts: number;
      strategy: MergeStrategy;
      verified: boolean;
      tree: string;
      batchSize: number;
      verifyMs?: number;
      waitedMs: number;
    }
  | {
      kind: "rejected";
      commit: string;
      tree: string;
      /** The first failing check. */
      check: SweepCheck;
      checks: SweepCheck[];
      durationMs: number;
      stackSize: number;
      bisectionDepth: number;
      waitedMs: number;
    }
  | { kind: "conflict"; files: string[]; attempts: number }
  | { kind: "skipped"; reason: string }
  /** The task's changes are already on the base (a redelivery, e.g. after a crash): `sha` = a base commit containing them. */
  | { kind: "already-merged"; sha: string; reason: string }
  | { kind: "failed"; reason: string };

/** A candidate's verification as reported to {@link MergeQueueOptions.onVerified}. */
export interface VerifiedCandidate {
  commit: string;
  tree: string;
  /** 1-based position in its stack when verified. */
  position: number;
  stackSize: number;
  durationMs: number;
  cached: boolean;
}

/**
 * The base branch kept moving: the push was refused `pushAttempts` times in a row. Retryable (redeliver the
 * handoff later).
 */
export class MergeContentionError extends Error {
  override name = "MergeContentionError";
  readonly pushAttempts: number;
  constructor(repo: string, base: string, pushAttempts: number, options?: { cause?: unknown }) {
    super(`push of ${base} to ${repo} rejected ${pushAttempts} times: the base keeps moving`, options);
    this.pushAttempts = pushAttempts;
  }
}

/** The handoff was replaced in the line by a newer delivery of the same task (answer the newer one). */
export class SupersededError extends Error {
  override name = "SupersededError";
}

/** The task's candidate is in the stack right now (being verified or pushed): try the delivery again later. */
export class InFlightError extends Error {
  override name = "InFlightError";
}

/** A candidate's verification could not run (sandbox or mirror failure), twice: retryable. */
export class VerificationError extends Error {
  override name = "VerificationError";
}

/** Verification settings; absent = MERGE_VERIFY=off (land whatever applies cleanly). */
export interface VerifyOptions {
  /** Where the checks run (the configured sandbox provider, role `merger`; never the merger's host). */
  provider: SandboxProvider;
  /** SWEEP_*_CMD: the check set is the reconciler's. */
  overrides: CheckOverrides;
  /** Timeout of each check, ms (MERGE_VERIFY_TIMEOUT_MS). */
  timeoutMs: number;
  /** SWEEP_INSTALL_NETWORK. */
  installNetwork: boolean;
}

/** Configuration of {@link createMergeQueue}. */
export interface MergeQueueOptions {
  /** Root of the merger's state; clones live in `<stateDir>/merger/<sha1(repo)[0:12]>`. */
  stateDir: string;
  /** MERGE_STRATEGY (default rebase). */
  strategy: MergeStrategy;
  log: Pick<Logger, "info" | "warn" | "debug">;
  /** Record of merged tasks (NATS KV in production). */
  records: MergedRecordStore;
  /** Verification before landing; undefined = off. */
  verify?: VerifyOptions | undefined;
  /** MERGE_SPECULATION_DEPTH: candidates stacked and verified at once per base branch (default 4). */
  depth?: number;
  /** Builds of one candidate that may conflict on the base before it is reported (default 3). */
  maxConflictAttempts?: number;
  /** Refused pushes in a row (the base kept moving) before giving up with {@link MergeContentionError} (default 5). */
  maxPushAttempts?: number;
  /** Extra environment for git network commands (credentials, e.g. GIT_ASKPASS); never argv or config. */
  gitEnv?: GitEnvOptions["env"];
  /** Called before every push of the base (tests use it to move the target meanwhile). */
  beforePush?: (context: { repo: string; base: string; sha: string; attempt: number }) => Promise<void>;
  /** Called when a candidate's tree passed the checks (the `merge.verified` event). Must not throw. */
  onVerified?: (handoff: Handoff, v: VerifiedCandidate) => void;
  /** Clock (ms). */
  now?: () => number;
}

/**
 * Counters of a merge queue since it started, for metrics (the service's /metrics can read them):
 * candidates built, landed, rejected; pushes of the base and the candidates they carried; verifications run,
 * served from the cache, aborted (their stack changed); base moves; conflicts; total verify and wait time.
 */
export interface MergeQueueStats {
  built: number;
  landed: number;
  rejected: number;
  pushes: number;
  verifications: number;
  /** Verifications running now, and the most that ever ran at once. */
  verifying: number;
  maxVerifying: number;
  cacheHits: number;
  verificationsAborted: number;
  baseMoves: number;
  conflicts: number;
  /** Time spent building candidates (git, serialized per repository), ms. */
  buildMsTotal: number;
  verifyMsTotal: number;
  waitedMsTotal: number;
}

/** The merge queue; see {@link createMergeQueue}. */
export interface MergeQueue {
  /**
   * Lands one handoff (resolves when its candidate landed, was rejected, or was decided otherwise). Rejects
   * with {@link SupersededError} when a newer delivery of the task replaced it in the line, {@link InFlightError}
   * when the task's candidate is in the stack right now, and for transient failures worth a redelivery: GitError
   * (network, git crash), GitPushError (the target refused the push, e.g. a dirty working tree),
   * {@link MergeContentionError}, {@link VerificationError}, errors of the record store.
   */
  submit(handoff: Handoff, opts?: { receivedAt?: number }): Promise<MergeOutcome>;
  /** The working clone directory used for `repo`. */
  workDirFor(repo: string): string;
  stats(): MergeQueueStats;
}

/** One candidate being handled: its handoff and how to answer it. */
interface Entry {
  handoff: Handoff;
  receivedAt: number;
  /** Commit to build from (the handoff's head once fetched; else the branch's head). */
  head?: string;
  resolve(o: MergeOutcome): void;
  reject(e: unknown): void;
}

/** A verification of one tree, shared by every slot with that tree; aborted when nobody needs it any more. */
interface VerifyJob {
  controller: AbortController;
  users: Set<string>;
  promise: Promise<VerifyResult>;
}

interface VerifyResult {
  green: boolean;
  checks: SweepCheck[];
  durationMs: number;
  commit: string;
}

interface Lane {
  repo: string;
  base: string;
  state: LaneState;
  entries: Map<string, Entry>;
  running: boolean;
  again: boolean;
  /** Slot key → the tree whose job it uses. */
  jobsOf: Map<string, string>;
  /** Verification failures per slot key (a third fails the candidate as retryable). */
  verifyErrors: Map<string, number>;
  /**
   * Outcomes of verifications that arrived meanwhile: applied by `drive` under the repository's lock, so the
   * stack never changes under an action in progress (e.g. a push of its bottom slots).
   */
  inbox: Array<() => void>;
}

/** Verdicts kept per repository, by tree (least recently used dropped past this many). */
const CACHE_LIMIT = 2_000;
/** Output kept per check in `merge.rejected`'s list of checks, in chars. */
const CHECK_TAIL_CHARS = 500;

/**
 * Creates the merge queue. Per target repository one working clone (created on first use after
 * `prepareTargetRepo`), in which candidates are built; per base branch one lane (domain/lane.ts):
 * - candidates are stacked in priority order (base + A, base + A + B, …, up to `depth`) and, with verification,
 *   each stacked tree is verified at once in its own sandbox of the configured provider (the check set of
 *   `checkCommit`: the reconciler's, install/build/typecheck/test and conflict markers), after the candidate
 *   commit was stored in the provider's mirror under `refs/longshot/candidates/<tree>`;
 * - the longest green run from the bottom lands in one push of its top commit — never forced, so every commit
 *   the base gains is one verified tree (a branch of several commits is squashed into one while verifying);
 * - the first red slot above green ones is rejected; the slots above it are rebuilt without it (their running
 *   verifications are aborted); a tree verified before is not verified again (cache by repository and tree);
 * - idempotent per task: skipped when the record store has the task, and a branch whose changes are already on
 *   the base ends as `already-merged`; a conflict is retried on a fresh base before it is reported; a moved base
 *   rebuilds the stack, at most `maxPushAttempts` times in a row.
 * Without verification, candidates land as soon as they are built (stacked up to `depth` per push).
 */
export function createMergeQueue(options: MergeQueueOptions): MergeQueue {
  const { stateDir, log, records } = options;
  const now = options.now ?? Date.now;
  const verifyOn = options.verify !== undefined;
  const policy: LanePolicy = {
    depth: Math.max(1, options.depth ?? 4),
    maxConflictAttempts: options.maxConflictAttempts ?? 3,
    maxPushAttempts: options.maxPushAttempts ?? 5,
  };
  const net: GitEnvOptions = options.gitEnv ? { env: options.gitEnv } : {};
  const lanes = new Map<string, Lane>();
  const repoLocks = new Map<string, Promise<unknown>>();
  const prepared = new Set<string>();
  /** Per repository, the first sync of the provider's mirror (it must exist before candidates are stored). */
  const mirrorsReady = new Map<string, Promise<void>>();
  const verdicts = new Map<string, VerifyResult>();
  const jobs = new Map<string, VerifyJob>();
  /**
   * Fetches the branches of every waiting candidate whose head is not known yet in one `git fetch` (one
   * round trip for a backlog), and takes each handoff's head when the clone has it. A fetch that fails (e.g. a
   * branch is gone) leaves those candidates to the per-branch fetch of `build`.
   */
  async function fetchHeads(lane: Lane, dir: string): Promise<void> {
    const pending = lane.state.line
      .map((w) => lane.entries.get(w.key))
      .filter((e): e is Entry => e !== undefined && e.head === undefined);
    const branches = [...new Set(pending.map((e) => branchOf(e.handoff)))];
    if (branches.length > 1) await fetchRemoteBranches(dir, branches, net).catch(() => undefined);
    const known = await existingCommits(
      dir,
      pending.flatMap((e) => (e.handoff.head ? [e.handoff.head] : [])),
    );
    for (const e of pending) if (e.handoff.head && known.has(e.handoff.head)) e.head = e.handoff.head;
  }

  /** What each slot was built as (strategy, rebased, verdict from the cache), by `<base>\0<key>`. */
  const buildInfo = new Map<string, Extract<CandidateResult, { kind: "built" }> & { cached: boolean }>();
  const stats: MergeQueueStats = {
    built: 0,
    landed: 0,
    rejected: 0,
    pushes: 0,
    verifications: 0,
    verifying: 0,
    maxVerifying: 0,
    cacheHits: 0,
    verificationsAborted: 0,
    baseMoves: 0,
    conflicts: 0,
    buildMsTotal: 0,
    verifyMsTotal: 0,
    waitedMsTotal: 0,
  };

  const workDirFor = (repo: string): string =>
    join(stateDir, "merger", createHash("sha1").update(repoKey(repo)).digest("hex").slice(0, 12));
  const cacheKey = (repo: string, tree: string) => `${repoKey(repo)}\0${tree}`;

  /** Runs `fn` after every earlier call for the same repository has settled (one clone, one git at a time). */
  function serialized<R>(repo: string, fn: () => Promise<R>): Promise<R> {
    const key = repoKey(repo);
    const previous = repoLocks.get(key) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    repoLocks.set(key, tail);
    void tail.then(() => {
      if (repoLocks.get(key) === tail) repoLocks.delete(key);
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

  function laneFor(repo: string, base: string): Lane {
    const key = `${repoKey(repo)}\0${base}`;
    let lane = lanes.get(key);
    if (!lane) {
      lane = {
        repo,
        base,
        state: emptyLane(),
        entries: new Map(),
        running: false,
        again: false,
        jobsOf: new Map(),
        verifyErrors: new Map(),
        inbox: [],
      };
      lanes.set(key, lane);
    }
    return lane;
  }

  /** Answers candidate `key` and forgets it. */
  function settle(lane: Lane, key: string, outcome: MergeOutcome | { error: unknown }): void {
    const entry = lane.entries.get(key);
    lane.entries.delete(key);
    lane.verifyErrors.delete(key);
    release(lane, key);
    if (!entry) return;
    if ("error" in outcome) entry.reject(outcome.error);
    else entry.resolve(outcome);
  }

  /** The slot `key` no longer needs its verification: abort it when nobody else does. */
  function release(lane: Lane, key: string): void {
    const tree = lane.jobsOf.get(key);
    if (tree === undefined) return;
    lane.jobsOf.delete(key);
    const ck = cacheKey(lane.repo, tree);
    const job = jobs.get(ck);
    if (!job) return;
    job.users.delete(`${lane.base}\0${key}`);
    if (job.users.size === 0) {
      jobs.delete(ck);
      stats.verificationsAborted++;
      job.controller.abort(new Error("candidate left the stack"));
    }
  }

  function dropAll(lane: Lane, slots: readonly Slot[]): void {
    for (const slot of slots) release(lane, slot.key);
  }

  function pump(lane: Lane): void {
    if (lane.running) {
      lane.again = true;
      return;
    }
    lane.running = true;
    void (async () => {
      try {
        do {
          lane.again = false;
          await serialized(lane.repo, () => drive(lane));
        } while (lane.again);
      } catch (err) {
        // drive() answers every failure itself; anything here is a bug: fail what waits so nothing hangs.
        log.warn({ err, repo: lane.repo, base: lane.base }, "merge lane failed");
        for (const key of [...lane.entries.keys()]) settle(lane, key, { error: err });
        lane.state = emptyLane();
      } finally {
        lane.running = false;
        if (lane.again) pump(lane);
      }
    })();
  }

  /** Performs the lane's actions until it waits for verdicts or new candidates. Holds the repository's lock. */
  async function drive(lane: Lane): Promise<void> {
    const dir = await ensureClone(lane.repo).catch((err: unknown) => {
      for (const key of [...lane.entries.keys()]) settle(lane, key, { error: err });
      lane.state = emptyLane();
      return undefined;
    });
    if (dir === undefined) return;
    for (;;) {
      for (let apply = lane.inbox.shift(); apply; apply = lane.inbox.shift()) apply();
      const action = nextAction(lane.state, policy);
      switch (action.kind) {
        case "idle":
          return;
        case "fetch-base": {
          let sha: string | undefined;
          try {
            sha = await fetchRemoteBranch(dir, lane.base, net);
          } catch (err) {
            for (const w of lane.state.line) settle(lane, w.key, { error: err });
            lane.state = { ...lane.state, line: [] };
            break;
          }
          if (sha === undefined) {
            for (const w of lane.state.line) {
              settle(lane, w.key, { kind: "failed", reason: `base branch ${lane.base} not found on origin` });
            }
            lane.state = { ...lane.state, line: [] };
            break;
          }
          const r = baseFetched(lane.state, sha);
          lane.state = r.state;
          dropAll(lane, r.dropped);
          break;
        }
        case "build":
          await build(lane, dir, action.key, action.onto, action.position);
          break;
        case "verify":
          await startVerification(lane, dir, action.index);
          break;
        case "land":
          await land(lane, dir, action.count, action.commit);
          break;
        case "reject": {
          const slot = lane.state.stack[action.index]!;
          const result = verdicts.get(cacheKey(lane.repo, slot.tree));
          const stackSize = lane.state.stack.length;
          const r = rejected(lane.state, action.index);
          lane.state = r.state;
          dropAll(lane, r.dropped);
          stats.rejected++;
          const entry = lane.entries.get(slot.key);
          const checks = result?.checks ?? [];
          const failing = checks.find((c) => !c.ok) ?? {
            name: "test" as const,
            command: "",
            ok: false,
            exitCode: null,
            output: "",
            durationMs: 0,
          };
          log.info(
            {
              repo: lane.repo,
              base: lane.base,
              key: slot.key,
              check: failing.name,
              bisectionDepth: action.bisectionDepth,
            },
            "candidate rejected",
          );
          settle(lane, slot.key, {
            kind: "rejected",
            commit: slot.commit,
            tree: slot.tree,
            check: failing,
            checks: checks.map((c) => ({ ...c, output: c.output.slice(-CHECK_TAIL_CHARS) })),
            durationMs: result?.durationMs ?? 0,
            stackSize,
            bisectionDepth: action.bisectionDepth,
            waitedMs: entry ? now() - entry.receivedAt : 0,
          });
          break;
        }
      }
    }
  }

  async function build(lane: Lane, dir: string, key: string, onto: string, position: number): Promise<void> {
    const entry = lane.entries.get(key);
    if (!entry) {
      lane.state = remove(lane.state, key).state;
      return;
    }
    const h = entry.handoff;
    const branch = branchOf(h);
    const buildStarted = now();
    let result: CandidateResult;
    try {
      if (entry.head === undefined) await fetchHeads(lane, dir);
      if (entry.head === undefined) {
        const branchHead = await fetchRemoteBranch(dir, branch, net);
        // The handoff's head is what was reported (and what its task's attempt pushed); the branch may be gone
        // (deleted after an earlier landing) while its head is still known here.
        entry.head = h.head && (await commitExists(dir, h.head)) ? h.head : branchHead;
      }
      if (entry.head === undefined) {
        const r = buildEnded(lane.state, key, "failed", policy);
        lane.state = r.state;
        settle(lane, key, { kind: "failed", reason: `branch ${branch} not found on origin` });
        return;
      }
      const top = lane.state.stack.at(-1);
      result = await buildCandidate(dir, {
        onto,
        ontoTree: top?.commit === onto ? top.tree : undefined,
        head: entry.head,
        strategy: options.strategy,
        message: `Merge ${branch} (task ${h.taskId})\n\n${h.task.description.slice(0, 500)}`,
        squash: verifyOn,
      });
    } catch (err) {
      // A git failure (network, crash): the handoff is redelivered later.
      const r = remove(lane.state, key);
      lane.state = r.state;
      dropAll(lane, r.dropped);
      settle(lane, key, { error: err });
      return;
    } finally {
      stats.buildMsTotal += now() - buildStarted;
    }
    const ctx = { runId: h.runId, taskId: h.taskId, repo: lane.repo, base: lane.base, branch, position };
    if (result.kind === "built") {
      stats.built++;
      const known = verdicts.get(cacheKey(lane.repo, result.tree));
      const v = !verifyOn ? "green" : known ? (known.green ? "green" : "red") : "unverified";
      if (verifyOn && known) {
        stats.cacheHits++;
        // Refresh its place in the cache (least recently used goes first).
        verdicts.delete(cacheKey(lane.repo, result.tree));
        verdicts.set(cacheKey(lane.repo, result.tree), known);
      }
      lane.state = built(lane.state, key, result.commit, result.tree, v);
      buildInfo.set(`${lane.base}\0${key}`, { ...result, cached: verifyOn && known !== undefined });
      log.debug({ ...ctx, commit: result.commit, rebased: result.rebased, verdict: v }, "candidate built");
      if (verifyOn && known?.green) {
        options.onVerified?.(h, {
          commit: result.commit,
          tree: result.tree,
          position,
          stackSize: lane.state.stack.length,
          durationMs: 0,
          cached: true,
        });
      }
      return;
    }
    const outcome = result.kind === "failed" ? "failed" : result.kind;
    const r = buildEnded(lane.state, key, outcome, policy);
    lane.state = r.state;
    if (!r.decided) {
      log.info({ ...ctx, outcome: result.kind }, "candidate does not apply here; retrying on the base");
      return;
    }
    if (result.kind === "conflict") {
      stats.conflicts++;
      log.info({ ...ctx, files: result.files, attempts: r.builds }, "merge conflict");
      settle(lane, key, { kind: "conflict", files: result.files, attempts: r.builds });
    } else if (result.kind === "noop") {
      await records.put(mergedRecordKey(h), onto).catch(() => undefined);
      settle(lane, key, {
        kind: "already-merged",
        sha: onto,
        reason: `the changes of ${branch} are already on ${lane.base} (${result.reason})`,
      });
    } else {
      settle(lane, key, { kind: "failed", reason: result.reason });
    }
  }

  async function startVerification(lane: Lane, dir: string, index: number): Promise<void> {
    const slot = lane.state.stack[index]!;
    const provider = options.verify!.provider;
    const ck = cacheKey(lane.repo, slot.tree);
    const position = index + 1;
    const stackSize = lane.state.stack.length;
    lane.state = verifying(lane.state, index);
    let job = jobs.get(ck);
    if (!job) {
      const controller = new AbortController();
      const started = now();
      const ref = `refs/longshot/candidates/${slot.tree}`;
      const runId = lane.entries.get(slot.key)?.handoff.runId ?? "";
      stats.verifications++;
      stats.verifying++;
      stats.maxVerifying = Math.max(stats.maxVerifying, stats.verifying);
      // Outside the repository's lock: the mirror (created once per repository) gets the candidate commit from
      // the working clone (git reads objects safely while the next candidate is built there), then the checks run.
      const promise = (async () => {
        const mirror = provider.mirror(lane.repo);
        let ready = mirrorsReady.get(repoKey(lane.repo));
        if (!ready) {
          ready = mirror.sync();
          mirrorsReady.set(repoKey(lane.repo), ready);
          ready.catch(() => mirrorsReady.delete(repoKey(lane.repo)));
        }
        await ready;
        await storeCommit(dir, mirror.dir, slot.commit, ref);
        return checkCommit(
          provider,
          { repo: lane.repo, ref, commit: slot.commit },
          {
            overrides: options.verify!.overrides,
            timeoutMs: options.verify!.timeoutMs,
            installNetwork: options.verify!.installNetwork,
            labels: { purpose: "merge-verify", runId },
            signal: controller.signal,
          },
        );
      })()
        .then((r) => ({ green: r.green, checks: r.checks, durationMs: now() - started, commit: slot.commit }))
        .finally(() => {
          stats.verifying--;
          void provider
            .mirror(lane.repo)
            .deleteRef(`refs/longshot/candidates/${slot.tree}`)
            .catch(() => undefined);
        });
      job = { controller, users: new Set(), promise };
      jobs.set(ck, job);
      void promise.then(
        (result) => {
          if (jobs.get(ck) !== job) return;
          jobs.delete(ck);
          verdicts.set(ck, result);
          while (verdicts.size > CACHE_LIMIT) verdicts.delete(verdicts.keys().next().value!);
          stats.verifyMsTotal += result.durationMs;
        },
        () => {
          if (jobs.get(ck) === job) jobs.delete(ck);
        },
      );
    }
    job.users.add(`${lane.base}\0${slot.key}`);
    lane.jobsOf.set(slot.key, slot.tree);
    const theJob = job;
    void theJob.promise.then(
      (result) => {
        lane.inbox.push(() => {
          if (lane.jobsOf.get(slot.key) !== slot.tree) return;
          lane.jobsOf.delete(slot.key);
          lane.state = verdict(lane.state, slot.tree, result.green);
          const entry = lane.entries.get(slot.key);
          const stillThere = lane.state.stack.some((s) => s.key === slot.key);
          log.info(
            {
              repo: lane.repo,
              key: slot.key,
              tree: slot.tree,
              green: result.green,
              durationMs: result.durationMs,
            },
            "candidate verified",
          );
          if (result.green && entry && stillThere) {
            options.onVerified?.(entry.handoff, {
              commit: slot.commit,
              tree: slot.tree,
              position,
              stackSize,
              durationMs: result.durationMs,
              cached: false,
            });
          }
        });
        pump(lane);
      },
      (err: unknown) => {
        if (theJob.controller.signal.aborted) return;
        lane.inbox.push(() => {
          if (lane.jobsOf.get(slot.key) !== slot.tree) return;
          lane.jobsOf.delete(slot.key);
          verificationFailed(lane, slot.key, err);
        });
        pump(lane);
      },
    );
  }

  /** A verification could not run: verify again (twice), then fail the candidate as retryable. */
  function verificationFailed(lane: Lane, key: string, err: unknown): void {
    const n = (lane.verifyErrors.get(key) ?? 0) + 1;
    lane.verifyErrors.set(key, n);
    log.warn({ err, repo: lane.repo, key, failures: n }, "verification could not run");
    if (n < 3) {
      lane.state = unverified(lane.state, key);
      return;
    }
    const r = remove(lane.state, key);
    lane.state = r.state;
    dropAll(lane, r.dropped);
    settle(lane, key, {
      error: new VerificationError(`verification of ${key} could not run: ${(err as Error).message}`, {
        cause: err,
      }),
    });
  }

  async function land(lane: Lane, dir: string, count: number, commit: string): Promise<void> {
    const attempt = lane.state.moves + 1;
    let push: Awaited<ReturnType<typeof pushCommitToBase>>;
    try {
      await options.beforePush?.({ repo: lane.repo, base: lane.base, sha: commit, attempt });
      push = await pushCommitToBase(dir, commit, lane.base, net);
    } catch (err) {
      // The target refused for another reason (hook, dirty checkout) or git failed: every slot is redelivered.
      log.warn({ err, repo: lane.repo, base: lane.base }, "push of the base failed");
      const slots = [...lane.state.stack];
      lane.state = { ...lane.state, stack: [], baseFresh: false, firstRed: undefined };
      for (const slot of slots) settle(lane, slot.key, { error: err });
      return;
    }
    if (!push.ok) {
      stats.baseMoves++;
      const r = pushRefused(lane.state, policy);
      lane.state = r.state;
      dropAll(lane, r.dropped);
      log.info(
        { repo: lane.repo, base: lane.base, moves: r.moves, reason: push.reason },
        "push refused: the base moved",
      );
      for (const slot of r.givenUp) {
        settle(lane, slot.key, { error: new MergeContentionError(lane.repo, lane.base, r.moves) });
      }
      return;
    }
    stats.pushes++;
    const r = landed(lane.state, count);
    lane.state = r.state;
    for (const slot of r.landed) {
      const entry = lane.entries.get(slot.key);
      const info = buildInfo.get(`${lane.base}\0${slot.key}`);
      buildInfo.delete(`${lane.base}\0${slot.key}`);
      lane.jobsOf.delete(slot.key);
      if (!entry) continue;
      await records.put(mergedRecordKey(entry.handoff), slot.commit).catch((err: unknown) => {
        log.warn({ err, key: slot.key }, "merged record not stored");
      });
      const waitedMs = now() - entry.receivedAt;
      stats.landed++;
      stats.waitedMsTotal += waitedMs;
      const result = verdicts.get(cacheKey(lane.repo, slot.tree));
      log.info(
        { repo: lane.repo, base: lane.base, key: slot.key, sha: slot.commit, batchSize: count, waitedMs },
        "merged",
      );
      settle(lane, slot.key, {
        kind: "merged",
        sha: slot.commit,
        rebased: info?.rebased ?? false,
        attempts: slot.builds,
        strategy: info?.strategy ?? options.strategy,
        verified: verifyOn,
        tree: slot.tree,
        batchSize: count,
        ...(verifyOn && result ? { verifyMs: info?.cached ? 0 : result.durationMs } : {}),
        waitedMs,
      });
    }
  }

  return {
    workDirFor,
    stats: () => ({ ...stats }),
    async submit(handoff, opts = {}) {
      // Cheap checks first, without waiting for the repository or touching git.
      const key = mergedRecordKey(handoff);
      const recordedSha = await records.get(key);
      const early = decide(handoff, { recordedSha });
      if (early.kind === "already-merged" && recordedSha)
        return { kind: "already-merged", sha: recordedSha, reason: early.reason };
      if (early.kind !== "merge") return { kind: "skipped", reason: early.reason };
      const lane = laneFor(handoff.task.repo, handoff.task.baseBranch);
      return new Promise<MergeOutcome>((resolve, reject) => {
        const r = submit(lane.state, key, handoff.task.priority);
        if (r.status === "in-flight") {
          reject(new InFlightError(`task ${handoff.taskId} is being merged right now`));
          return;
        }
        const previous = lane.entries.get(key);
        if (r.status === "replaced") previous?.reject(new SupersededError("superseded by a redelivery"));
        lane.state = r.state;
        lane.entries.set(key, { handoff, receivedAt: opts.receivedAt ?? now(), resolve, reject });
        pump(lane);
      });
    },
  };
}
