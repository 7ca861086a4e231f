import type { Bus } from "@longshot/bus";
import { RetryableError } from "@longshot/bus";
import type { ChatClient } from "@longshot/llm";
import type { Logger } from "@longshot/log";
import { proposeFixes } from "./adapters/fixer.ts";
import type { Sweeper, SweepResult } from "./adapters/sweep.ts";
import { SweepCoalescer } from "./domain/coalesce.ts";
import { afterSweep, type SweepTimerPolicy, type SweepTimerState } from "./domain/schedule.ts";
import { failureSignature } from "./domain/signature.ts";

/** Dependencies of the reconciler core. `sweep` checks a base branch (see adapters/sweep.ts). */
export interface ReconcilerDeps {
  bus: Bus;
  log: Logger;
  /** Sweeps the base branch's head, or commit `at` of its history (a re-run). */
  sweep: Sweeper;
  /** Current head of the base branch; a red result for an older sha is stale and files no fix tasks. */
  headOf: (repo: string, baseBranch: string) => Promise<string | undefined>;
  /** Model for fix tasks; without one, red sweeps only report health. */
  llm?: { client: ChatClient; systemPrompt: string };
  timer: SweepTimerPolicy;
  /** Minimum ms before asking the model again about the same failure signature of a run. */
  refileAfterMs: number;
}

interface RunTarget {
  repo: string;
  baseBranch: string;
  timer?: NodeJS.Timeout;
  timerState: SweepTimerState;
}

/**
 * The reconciler core. Sweeps per run are coalesced (never overlapping; requests during a sweep share one
 * follow-up sweep). After every sweep it schedules the next timer sweep (60 s while red, 300 s after 3 greens
 * in a row), publishes one `health.swept` per sweep (and one per explicit request id), and on red asks the
 * model for ≤ 5 fix tasks, published as `fix.requested` with the failure signature, at most once per
 * signature per `refileAfterMs` (the planner drops duplicates while a fix is in flight). A red result whose
 * sha is no longer the head of the base branch is stale: it is reported but files no fix tasks.
 *
 * The safety net of the merge queue (#12): a red sweep of a commit the queue verified before landing it
 * ({@link noteVerified}, from `merge.merged` with `verified`) should not happen. The checks are run once more on
 * that commit to tell why, and `health.verified-red` says which: `flaky` (the re-run passed: a flaky check; the
 * re-run's green result stands) or `queue-defect` (it failed again: the queue landed a tree that fails, or the
 * environment drifted since it verified).
 */
export function createReconciler(deps: ReconcilerDeps) {
  const runs = new Map<string, RunTarget>();
  const published = new Map<string, Promise<void>>();
  const asked = new Map<string, number>();
  /** Per run, the base commits the merge queue verified (the newest few thousand). */
  const verified = new Map<string, Set<string>>();
  let sweeps = 0;

  /** A red sweep of a commit the queue verified: re-runs it once and says whether it is a flake or a defect. */
  async function recheckVerified(runId: string, t: RunTarget, first: SweepResult): Promise<SweepResult> {
    const rerun = await deps.sweep(t.repo, t.baseBranch, first.sha);
    const cause = rerun.green ? "flaky" : "queue-defect";
    const failing = first.checks.filter((c) => !c.ok);
    deps.log.warn(
      {
        runId,
        sha: first.sha,
        cause,
        failing: failing.map((c) => c.name),
        rerunFailing: rerun.checks.filter((c) => !c.ok).map((c) => c.name),
      },
      "base red at a commit the merge queue verified",
    );
    await deps.bus.publishEvent(
      "health.verified-red",
      runId,
      {
        sha: first.sha,
        cause,
        failing: failing.map((c) => c.name),
        rerunFailing: rerun.checks.filter((c) => !c.ok).map((c) => c.name),
        checks: failing,
      },
      { id: `verified-red-${runId}-${first.sha.slice(0, 12)}-${sweeps}` },
    );
    return rerun;
  }

  const coalescer = new SweepCoalescer<SweepResult & { no: number }>(async (runId) => {
    const t = runs.get(runId)!;
    const no = ++sweeps;
    let result = await deps.sweep(t.repo, t.baseBranch);
    if (!result.green && verified.get(runId)?.has(result.sha))
      result = await recheckVerified(runId, t, result);
    deps.log.info(
      {
        runId,
        sha: result.sha,
        green: result.green,
        durationMs: result.durationMs,
        failing: result.checks.filter((c) => !c.ok).map((c) => c.name),
      },
      "swept",
    );
    schedule(runId, result.green);
    if (!result.green) void fileFixes(runId, t, result);
    return { ...result, no };
  });

  function schedule(runId: string, green: boolean): void {
    const t = runs.get(runId);
    if (!t) return;
    const next = afterSweep(t.timerState, green, deps.timer);
    t.timerState = next.state;
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => {
      void request(runId, t.repo, t.baseBranch, undefined).catch((err) =>
        deps.log.warn({ err, runId }, "timer sweep failed"),
      );
    }, next.delayMs);
    t.timer.unref();
  }

  async function fileFixes(runId: string, t: RunTarget, r: SweepResult): Promise<void> {
    if (!deps.llm) return;
    const head = await deps.headOf(t.repo, t.baseBranch);
    if (head !== r.sha) {
      // Stale: main moved during the sweep; the follow-up sweep of the new head decides.
      deps.log.info({ runId, swept: r.sha, head }, "red result is stale; no fix tasks filed");
      return;
    }
    const signature = failureSignature(r.checks, r.conflictFiles);
    const key = `${runId}.${signature}`;
    const last = asked.get(key);
    if (last !== undefined && Date.now() - last < deps.refileAfterMs) return;
    asked.set(key, Date.now());
    try {
      const { tasks } = await proposeFixes(deps.llm.client, deps.llm.systemPrompt, {
        runId,
        sha: r.sha,
        baseBranch: t.baseBranch,
        checks: r.checks,
        conflictFiles: r.conflictFiles,
      });
      if (tasks.length === 0) return;
      const failing = r.checks.filter((c) => !c.ok).map((c) => c.name);
      await deps.bus.publishEvent(
        "fix.requested",
        runId,
        {
          sha: r.sha,
          signature,
          summary: `${failing.join(", ")} failing${r.conflictFiles.length ? ` (conflict markers in ${r.conflictFiles.join(", ")})` : ""}`,
          tasks,
        },
        { id: `fix-${runId}-${signature}-${r.sha.slice(0, 12)}` },
      );
      deps.log.info({ runId, signature, tasks: tasks.length }, "fix tasks requested");
    } catch (err) {
      asked.delete(key);
      deps.log.warn(
        { err, runId },
        "model gave no usable fix tasks; will ask again after the next red sweep",
      );
    }
  }

  /** Sweeps run `runId` (joining a pending sweep) and publishes its health event. */
  async function request(
    runId: string,
    repo: string,
    baseBranch: string,
    requestId: string | undefined,
  ): Promise<void> {
    const t = runs.get(runId);
    if (t) Object.assign(t, { repo, baseBranch });
    else runs.set(runId, { repo, baseBranch, timerState: { greens: 0 } });
    let r: SweepResult & { no: number };
    try {
      r = await coalescer.request(runId);
    } catch (err) {
      throw new RetryableError(`sweep failed: ${(err as Error).message}`, { delayMs: 5000, cause: err });
    }
    const { no, ...result } = r;
    // Requests that joined the same sweep share one event; an explicit request id gets its own. The id also
    // makes JetStream drop a republish after a redelivery.
    const eventKey = `${runId}-${no}-${requestId ?? "merge"}`;
    let publishing = published.get(eventKey);
    if (!publishing) {
      publishing = deps.bus
        .publishEvent(
          "health.swept",
          runId,
          { ...result, ...(requestId ? { requestId } : {}) },
          { id: `swept-${eventKey}` },
        )
        .then(() => undefined);
      published.set(eventKey, publishing);
      publishing.catch(() => published.delete(eventKey));
    }
    await publishing;
  }

  /**
   * Records that the merge queue verified base commit `sha` of run `runId` before landing it (`merge.merged`
   * with `verified`): a red sweep of it is re-run to tell a flake from a queue defect.
   */
  function noteVerified(runId: string, sha: string): void {
    const shas = verified.get(runId) ?? new Set<string>();
    verified.set(runId, shas);
    shas.add(sha);
    if (shas.size > 5_000) shas.delete(shas.values().next().value!);
  }

  return {
    request,
    noteVerified,
    /**
     * A landing the merge queue verified (`merge.merged` with `verified`): noted ({@link noteVerified}), and the
     * run is watched by the timer — a sweep after the short interval unless one is scheduled already — instead
     * of swept at once: the queue has just run the same checks on that very commit, so an immediate sweep would
     * only repeat them (and compete with the queue's verifications for the same cores).
     */
    verifiedLanding(runId: string, repo: string, baseBranch: string, sha: string): void {
      noteVerified(runId, sha);
      const t = runs.get(runId);
      if (t) Object.assign(t, { repo, baseBranch });
      else runs.set(runId, { repo, baseBranch, timerState: { greens: 0 } });
      const target = runs.get(runId)!;
      if (target.timer) return;
      target.timer = setTimeout(() => {
        void request(runId, target.repo, target.baseBranch, undefined).catch((err) =>
          deps.log.warn({ err, runId }, "timer sweep failed"),
        );
      }, deps.timer.redIntervalMs);
      target.timer.unref();
    },
    /** Stops the timer of a finished run and forgets it. */
    forget(runId: string): void {
      const t = runs.get(runId);
      if (t?.timer) clearTimeout(t.timer);
      runs.delete(runId);
      verified.delete(runId);
      for (const k of asked.keys()) if (k.startsWith(`${runId}.`)) asked.delete(k);
    },
    stop(): void {
      for (const t of runs.values()) if (t.timer) clearTimeout(t.timer);
    },
  };
}
