import { readFile } from "node:fs/promises";
import {
  acquirePlanningLease,
  type Bus,
  heldByOther,
  holdingPlanningLease,
  KvActor,
  KvActorExistsError,
  PLANNING_LEASE_TTL_MS,
  releaseLease,
  type ScopeLeases,
} from "@longshot/bus";
import {
  type AcceptedRun,
  Buckets,
  type CancelRequest,
  type EventPayload,
  type Handoff,
  HandoffMessage,
  TaskMessage,
  taskQueue,
} from "@longshot/contracts";
import type { RepoReader } from "@longshot/git";
import { type ChatClient, refusalStatus, repoToolSet } from "@longshot/llm";
import type { Logger } from "@longshot/log";
import type { KV } from "@nats-io/kv";
import { fitPrompt, runDigest } from "./domain/context.ts";
import { followUpMessage, initialMessage, seenState } from "./domain/messages.ts";
import {
  applyFinalRequest,
  applyFinalResult,
  applyFixRequest,
  applyHandoff,
  applyMerge,
  applyMergeRetry,
  applyPlan,
  applySweep,
  buildTasks,
  decideFinalize,
  handoffForRemerge,
  initialRunState,
  type MergeReport,
  needsPlan,
  PlannerOutput,
  type RunPolicy,
  type RunState,
  summarize,
  type Turn,
  tasksToPublish,
} from "./domain/run.ts";
import { runCodec } from "./domain/run-codec.ts";
import type { PlannerMetrics } from "./metrics.ts";

/** Dependencies of the planner core (factory-injected so tests can pass their own). */
export interface PlannerDeps {
  bus: Bus;
  log: Logger;
  llm: ChatClient;
  repo: RepoReader;
  systemPromptPath: string;
  policy: RunPolicy;
  replanAfter: number;
  maxIterations: number;
  /**
   * Prompt budget of one planner call, in estimated tokens (PLANNER_CONTEXT_TOKENS): older turns are compacted
   * into a run digest beyond it (see domain/context.ts). Default 64000.
   */
  contextTokens?: number;
  /**
   * Scope leases (shared with the dispatchers): released when a task's branch lands or is abandoned, and for
   * every task of a run when it completes. Absent = leases are not used.
   */
  leases?: ScopeLeases;
  /** Counts planning iterations (`longshot_planner_iterations_total`); absent = not counted. */
  metrics?: Pick<PlannerMetrics, "iteration" | "compaction" | "stateWritten" | "toolCall">;
  /**
   * Replies with tool calls the model may make per planning call (PLANNER_TOOL_ROUNDS): it reads the target
   * repository at the snapshot's commit with read_file, list, grep and git_log (see `repoToolSet` of
   * @longshot/llm). The tool exchange is not kept in the conversation. Absent or 0 = no tools.
   */
  toolRounds?: number;
  /**
   * This planner's instance id (see `instanceId` in @longshot/bus): the owner of the runs' planning leases it
   * takes. Several instances on one cluster must have distinct ids. Default `planner/1`.
   */
  instance?: string;
  /** Planning lease time-to-live, ms (renewed every third of it while planning). Default 60 s. */
  leaseTtlMs?: number;
}

const MAX_CONSECUTIVE_ERRORS = 10;
/** Pause before a failed tick (publish tasks, plan, finalize) is tried again, ms. */
const TICK_RETRY_MS = 2_000;
/** Prompt budget of a planner call when PLANNER_CONTEXT_TOKENS is not given, estimated tokens. */
const DEFAULT_CONTEXT_TOKENS = 64_000;

/** Pause before planning again after the n-th failure in a row (n ≥ 1): min(2 s · 2^(n−1), 30 s), in ms. */
const backoffMs = (n: number) => Math.min(2000 * 2 ** (n - 1), 30_000);

/** Outcome of {@link Planner.start}. `taken`: the run id belongs to a different request (`run` as stored). */
export type StartResult =
  | { status: "started" }
  | { status: "existing" }
  | { status: "taken"; run: AcceptedRun };

/**
 * The planner core: one actor per active run. Every state change is serialized per run and persisted to the
 * `longshot-runs` KV bucket (compare-and-set on the revision) before the triggering message is acknowledged, so a restarted planner resumes
 * (conversation included) from KV.
 */
export function createPlanner(deps: PlannerDeps) {
  const actors = new Map<string, RunActor>();
  const me = deps.instance ?? "planner/1";
  const leaseTtlMs = deps.leaseTtlMs ?? PLANNING_LEASE_TTL_MS;
  let kvP: Promise<KV> | undefined;
  const kv = () => {
    kvP ??= deps.bus.kv(Buckets.runs);
    return kvP;
  };
  let systemPrompt: string | undefined;
  /** Planning rounds that failed outside their own error handling (e.g. the state could not be written). */
  let planCrashes = 0;

  class RunActor {
    /** The run's state in KV (header, task records, order, conversation window: see domain/run-codec.ts). */
    private readonly store: KvActor<RunState>;
    private ticking = false;
    private again = false;
    private planning = false;
    private retryTimer: NodeJS.Timeout | undefined;
    private waitTimer: NodeJS.Timeout | undefined;
    private crashTimer: NodeJS.Timeout | undefined;
    private leaseTimer: NodeJS.Timeout | undefined;
    private tickRetryTimer: NodeJS.Timeout | undefined;
    /** Set by `dispose()`: no more ticks or retries are scheduled (an in-flight plan may still finish). */
    private disposed = false;
    /** Planning rounds of this run in a row that failed outside `plan()`'s own error handling. */
    private crashes = 0;
    readonly log: Logger;

    /** State bytes already counted in the metrics. */
    private reportedBytes = 0;

    constructor(store: KvActor<RunState>) {
      this.store = store;
      this.log = deps.log.child({ runId: store.state.run.runId });
    }

    /** The run's state as last persisted. */
    get state(): RunState {
      return this.store.state;
    }

    /** Bytes and writes of this run's state in KV (see KvActor). */
    get storeStats() {
      return this.store.stats;
    }

    /**
     * Applies `fn` to the state (serialized) and persists what changed with compare-and-set per key (see
     * KvActor: a second planner instance's concurrent change is reloaded and `fn` applied once more).
     */
    async mutate(fn: (s: RunState) => RunState): Promise<void> {
      try {
        await this.store.mutate(fn);
      } finally {
        const written = this.store.stats.bytes - this.reportedBytes;
        this.reportedBytes = this.store.stats.bytes;
        if (written > 0) deps.metrics?.stateWritten(written);
      }
    }

    /** Schedules a tick (publish tasks, plan, finalize); coalesces concurrent kicks. */
    kick(): void {
      if (this.disposed) return;
      if (this.ticking) {
        this.again = true;
        return;
      }
      this.ticking = true;
      void (async () => {
        try {
          do {
            this.again = false;
            await this.tick();
          } while (this.again);
        } catch (err) {
          // A KV or publish error (a cluster electing a leader, a timeout under load): tick again after a pause
          // rather than wait for the run's next message, which may never come.
          this.log.error({ err }, "tick failed; retrying in 2 s");
          if (!this.disposed && !this.tickRetryTimer)
            this.tickRetryTimer = setTimeout(() => {
              this.tickRetryTimer = undefined;
              this.kick();
            }, TICK_RETRY_MS);
        } finally {
          this.ticking = false;
        }
      })();
    }

    private async tick(): Promise<void> {
      // Another planner instance may have applied messages of this run: act on the state as it is in KV.
      if (!(await this.store.refresh()) || this.state.phase === "completed") {
        this.dispose();
        if (actors.get(this.state.run.runId) === this) actors.delete(this.state.run.runId);
        return;
      }
      const s = this.state;
      for (const task of tasksToPublish(s)) {
        const queue = taskQueue(task);
        // The event first: a dispatcher can start the task at once, and every reader of EVENTS (the monitor,
        // the CLI's views) must see an attempt planned before it sees it started.
        await deps.bus.publishEvent(
          "task.planned",
          s.run.runId,
          { task },
          { taskId: task.id, id: `planned-${s.run.runId}-${task.id}-${task.attempt}` },
        );
        await deps.bus.publish(TaskMessage, [queue, s.run.runId], task, {
          runId: s.run.runId,
          taskId: task.id,
          id: `task-${s.run.runId}-${task.id}-${task.attempt}`,
        });
        // Only this attempt: its handoff may already have replaced the record (a retry not yet published).
        await this.mutate((st) => {
          const r = st.tasks[task.id];
          if (!r || r.published || r.task.attempt !== task.attempt) return st;
          return {
            ...st,
            tasks: {
              ...st.tasks,
              [task.id]: { ...r, published: true, ...(queue === "decompose" ? { decomposed: true } : {}) },
            },
          };
        });
      }
      if (!this.planning && needsPlan(this.state, deps.replanAfter)) {
        // One planner plans a run at a time: take the run's planning lease first (compare-and-set in KV).
        const waitMs = await acquirePlanningLease(this, me, leaseTtlMs);
        if (waitMs !== undefined) return this.recheckLease(waitMs);
        this.planning = true;
        void this.plan().then(
          () => {
            this.crashes = 0;
            this.planning = false;
            this.kick();
          },
          (err: unknown) => this.planCrashed(err),
        );
        return;
      }
      if (this.planning) return;
      // Another instance is planning this run: it finalizes once it is done, not us meanwhile.
      if (heldByOther(this.state.planningLease, me, Date.now()))
        return this.recheckLease(this.state.planningLease!.expiresAt - Date.now());
      const d = decideFinalize(this.state, Date.now(), deps.policy);
      if (d.kind === "request-sweep") {
        // Publish first (idempotent by id), then persist: a crash in between re-publishes the same request.
        await deps.bus.publishEvent(
          "sweep.requested",
          s.run.runId,
          {
            requestId: d.requestId,
            reason: `final sweep ${this.state.final.attempt + 1}`,
            repo: s.run.repo,
            baseBranch: s.run.baseBranch,
          },
          { id: `sweep-${d.requestId}` },
        );
        await this.mutate((st) => applyFinalRequest(st, d.requestId));
        this.log.info({ requestId: d.requestId }, "every task terminal: final sweep requested");
      } else if (d.kind === "retry-merges") {
        for (const taskId of d.taskIds) {
          const h = handoffForRemerge(this.state, taskId);
          if (!h) continue;
          await deps.bus.publish(HandoffMessage, [s.run.runId], h, {
            runId: s.run.runId,
            taskId,
            id: `handoff-${s.run.runId}-${taskId}-${h.task.attempt}-remerge`,
          });
        }
        await this.mutate((st) => applyMergeRetry(st, d.taskIds));
        this.log.info({ taskIds: d.taskIds }, "failed merges re-submitted once before the final sweep");
      } else if (d.kind === "complete") {
        await this.complete(d.summary);
      } else if (d.untilMs !== undefined) {
        // Red final sweep: wait for fix tasks, but not past the deadline.
        if (this.waitTimer) clearTimeout(this.waitTimer);
        this.waitTimer = setTimeout(() => this.kick(), Math.max(0, d.untilMs - Date.now()) + 10);
      }
    }

    /** Ticks again when another instance's planning lease may have ended: in `waitMs`, 50 ms to 5 s. */
    private recheckLease(waitMs: number): void {
      if (this.disposed || this.leaseTimer) return;
      this.leaseTimer = setTimeout(
        () => {
          this.leaseTimer = undefined;
          this.kick();
        },
        Math.max(50, Math.min(waitMs + 50, 5_000)),
      );
    }

    /**
     * `plan()` handles the model's errors itself; this catches what escapes it (its error handling failed
     * too, e.g. the state could not be written): logged, counted, and planning tried again after a backoff
     * instead of an unhandled rejection taking the process down.
     */
    private planCrashed(err: unknown): void {
      this.crashes++;
      planCrashes++;
      const delayMs = backoffMs(this.crashes);
      this.log.error({ err, crashes: this.crashes, delayMs }, "planning failed outside its error handling");
      if (this.disposed) return;
      this.crashTimer = setTimeout(() => {
        this.planning = false;
        this.kick();
      }, delayMs);
    }

    async complete(summary: ReturnType<typeof summarize>): Promise<void> {
      // Publish first (idempotent by id), then persist: a crash in between completes the run again.
      await deps.bus.publishEvent("run.completed", this.state.run.runId, summary, {
        id: `run-completed-${this.state.run.runId}`,
      });
      await this.mutate((st) => ({ ...st, phase: "completed", summary }));
      await releaseLeases(this, this.state.order);
      this.log.info(
        { status: summary.status, merged: summary.merged, durationMs: summary.durationMs },
        "run completed",
      );
      actors.delete(this.state.run.runId);
    }

    private async plan(): Promise<void> {
      const s = this.state;
      const reported = new Set(s.pendingReports);
      const handoffsAtStart = s.handoffsSinceReplan;
      // The planning lease is renewed while the model call runs (a long reasoning call outlives one TTL).
      await holdingPlanningLease(this, me, () => this.planRound(s, reported, handoffsAtStart), {
        ttlMs: leaseTtlMs,
        onRenewError: (err) => this.log.warn({ err }, "planning lease not renewed"),
      });
    }

    private async planRound(s: RunState, reported: Set<string>, handoffsAtStart: number): Promise<void> {
      try {
        const snapshot = await deps.repo.snapshot(s.run.repo, s.run.baseBranch);
        systemPrompt ??= await readFile(deps.systemPromptPath, "utf8");
        const user: Turn = {
          role: "user",
          content:
            s.conversation.length === 0
              ? initialMessage(s, snapshot)
              : followUpMessage(s, snapshot, s.lastSeen ?? { files: [], head: "" }),
        };
        const window: Turn[] =
          s.conversation.length === 0 ? [{ role: "system", content: systemPrompt }] : s.conversation;
        const prompt = fitPrompt(window, user, deps.contextTokens ?? DEFAULT_CONTEXT_TOKENS, () =>
          runDigest(this.state),
        );
        if (prompt.dropped > 0) {
          this.log.info(
            { dropped: prompt.dropped, tokensBefore: prompt.tokensBefore, tokensAfter: prompt.tokensAfter },
            "planner conversation compacted",
          );
          deps.metrics?.compaction({
            dropped: prompt.dropped,
            tokensBefore: prompt.tokensBefore,
            tokensAfter: prompt.tokensAfter,
          });
        }
        // Read-only repository tools at the snapshot's commit; their exchange is transient (not in `res.added`).
        const toolRounds = deps.toolRounds ?? 0;
        const tools =
          toolRounds > 0
            ? {
                tools: repoToolSet(deps.repo.atCommit(s.run.repo, snapshot.head), deps.metrics?.toolCall),
                maxRounds: toolRounds,
              }
            : undefined;
        const res = await deps.llm.completeJson(
          prompt.messages,
          PlannerOutput,
          { runId: s.run.runId, taskId: "planner" },
          tools,
        );
        const sent = prompt.messages.at(-1)!;
        // The whole transcript goes to its own store, one key per turn (O(1) bytes per turn); the run state
        // keeps only the window.
        await appendTurns(s.run.runId, s.turnCount ?? 0, [
          ...(s.conversation.length === 0 ? [window[0]!] : []),
          sent,
          ...res.added,
        ]);
        const { tasks, dropped } = buildTasks(this.state, res.value.tasks, {
          branchPrefix: deps.policy.branchPrefix,
        });
        if (dropped.length) this.log.warn({ dropped }, "model repeated existing task ids; dropped");
        await this.mutate((st) => {
          const added = [sent, ...res.added];
          let next = applyPlan({ ...st, conversation: prompt.window }, added, tasks, res.usage.totalTokens);
          next = {
            ...next,
            turnCount: (st.turnCount ?? 0) + added.length + (st.conversation.length === 0 ? 1 : 0),
            compactions: (st.compactions ?? 0) + (prompt.dropped > 0 ? 1 : 0),
            pendingReports: st.pendingReports.filter((id) => !reported.has(id)),
            handoffsSinceReplan: Math.max(0, st.handoffsSinceReplan - handoffsAtStart),
            lastSeen: seenState(snapshot),
            planningLease: releaseLease(st.planningLease, me),
          };
          if (next.iteration >= deps.maxIterations) next.planningDone = true;
          return next;
        });
        await deps.bus.publishEvent("planner.iteration", s.run.runId, {
          iteration: this.state.iteration,
          newTasks: tasks.length,
          tokens: res.usage.totalTokens,
          done: this.state.planningDone,
        });
        deps.metrics?.iteration();
        this.log.info(
          {
            iteration: this.state.iteration,
            newTasks: tasks.length,
            done: this.state.planningDone,
            toolCalls: res.toolCalls,
          },
          "planned",
        );
      } catch (err) {
        await this.mutate((st) => ({
          ...st,
          consecutiveErrors: st.consecutiveErrors + 1,
          planningLease: releaseLease(st.planningLease, me),
        }));
        const n = this.state.consecutiveErrors;
        this.log.error({ err, consecutiveErrors: n }, "planning failed");
        const refused = refusalStatus(err);
        if (refused !== undefined) {
          // Wrong key, no access, unknown model: asking again cannot help. End the run now, saying why.
          await this.complete(
            summarize(
              this.state,
              this.state.lastSweep,
              Date.now(),
              `the model endpoint refused the planner's request (HTTP ${refused}): ${(err as Error).message}; check LLM_API_KEY / LLM_MODEL`,
            ),
          );
          return;
        }
        if (n >= MAX_CONSECUTIVE_ERRORS) {
          await this.complete(
            summarize(
              this.state,
              this.state.lastSweep,
              Date.now(),
              `planner gave up after ${n} consecutive errors: ${(err as Error).message}`,
            ),
          );
          return;
        }
        // Backoff min(2 s · 2^(n−1), 30 s) before the next attempt (inventory §1.5).
        await new Promise<void>((r) => {
          this.retryTimer = setTimeout(r, backoffMs(n));
        });
      }
    }

    dispose(): void {
      this.disposed = true;
      if (this.retryTimer) clearTimeout(this.retryTimer);
      if (this.waitTimer) clearTimeout(this.waitTimer);
      if (this.crashTimer) clearTimeout(this.crashTimer);
      if (this.leaseTimer) clearTimeout(this.leaseTimer);
      if (this.tickRetryTimer) clearTimeout(this.tickRetryTimer);
    }
  }

  /** Releases the scope leases of `taskIds` of `a`'s run (failures are logged: leases also expire). */
  async function releaseLeases(a: RunActor, taskIds: readonly string[]): Promise<void> {
    if (!deps.leases) return;
    for (const id of taskIds) {
      const r = a.state.tasks[id];
      if (!r) continue;
      await deps.leases
        .release({ ...r.task, ...(r.resolves ? { resolves: r.resolves } : {}) })
        .catch((err: unknown) => a.log.warn({ err, taskId: id }, "scope leases not released"));
    }
  }

  let turnsP: Promise<KV> | undefined;
  /** Writes turns `from`, `from+1`, … of run `runId` to the transcript store (key `<runId>.<n>`). */
  async function appendTurns(runId: string, from: number, turns: readonly Turn[]): Promise<void> {
    turnsP ??= deps.bus.kv(Buckets.plannerTurns);
    const store = await turnsP;
    for (const [i, t] of turns.entries()) await store.put(`${runId}.${from + i}`, JSON.stringify(t));
  }

  const loading = new Map<string, Promise<RunActor | undefined>>();
  /** The live actor of a run, loading an unfinished run from KV if needed (once, even for concurrent callers). */
  function actorFor(runId: string): Promise<RunActor | undefined> {
    const existing = actors.get(runId);
    if (existing) return Promise.resolve(existing);
    let p = loading.get(runId);
    if (!p) {
      p = (async () => {
        const store = await KvActor.load(await kv(), runId, runCodec);
        if (!store || store.state.phase === "completed") return undefined;
        const actor = new RunActor(store);
        actors.set(runId, actor);
        return actor;
      })().finally(() => loading.delete(runId));
      loading.set(runId, p);
    }
    return p;
  }

  return {
    /** Loads every unfinished run from KV and resumes it (after a restart). */
    async resume(): Promise<number> {
      const store = await kv();
      let n = 0;
      for await (const key of await store.keys()) {
        if (key.includes(".")) continue; // a part of a run's state, not a run
        const a = await actorFor(key);
        if (a) {
          a.kick();
          n++;
        }
      }
      return n;
    },
    /** The request of run `runId` as accepted earlier (from KV), or undefined when no run has that id. */
    async acceptedRun(runId: string): Promise<AcceptedRun | undefined> {
      const e = await (await kv()).get(runId);
      return e?.operation === "PUT" ? e.json<RunState>().run : undefined;
    },
    /**
     * Starts a new run (`started`), creating its state with compare-and-set so one run id is one run. When
     * the id already names a run: if `sameRequest(stored)` (default: equal fields), the request is a repeat
     * or a redelivery (perhaps after a crash before `run.accepted` went out) and only its announcements are
     * published again (`run.accepted`, and `run.completed` of a finished run, both under their original ids);
     * otherwise nothing is published and the stored run is returned as `taken`.
     * @throws what the KV write throws, other than "the key exists" (the request is then redelivered).
     */
    async start(
      run: AcceptedRun,
      sameRequest: (stored: AcceptedRun) => boolean = (stored) =>
        JSON.stringify(stored) === JSON.stringify(run),
    ): Promise<StartResult> {
      const store = await kv();
      const state = initialRunState(run, Date.now());
      let created: KvActor<RunState> | undefined;
      try {
        created = await KvActor.create(store, run.runId, runCodec, state);
      } catch (err) {
        if (!(err instanceof KvActorExistsError)) throw err;
      }
      if (created) {
        const actor = new RunActor(created);
        actors.set(run.runId, actor);
        await deps.bus.publishEvent("run.accepted", run.runId, run, { id: `run-accepted-${run.runId}` });
        actor.kick();
        return { status: "started" };
      }
      const entry = await store.get(run.runId);
      if (entry?.operation !== "PUT") throw new Error(`run ${run.runId} exists but its state cannot be read`);
      const stored = entry.json<RunState>();
      if (!sameRequest(stored.run)) return { status: "taken", run: stored.run };
      await deps.bus.publishEvent("run.accepted", run.runId, stored.run, { id: `run-accepted-${run.runId}` });
      if (stored.phase === "completed" && stored.summary) {
        await deps.bus.publishEvent("run.completed", run.runId, stored.summary, {
          id: `run-completed-${run.runId}`,
        });
      }
      (await actorFor(run.runId))?.kick();
      return { status: "existing" };
    },
    async onHandoff(h: Handoff): Promise<void> {
      const a = await actorFor(h.runId);
      if (!a) return;
      await a.mutate((s) => applyHandoff(s, h, deps.policy));
      a.kick();
    },
    async onMerge(runId: string, m: MergeReport): Promise<void> {
      const a = await actorFor(runId);
      if (!a) return;
      await a.mutate((s) => applyMerge(s, m, deps.policy));
      // The task's files are free once its work landed or was given up; a conflict hands them to the
      // conflict-fix task filed for it (which takes the leases over), unless none was filed.
      const origin = a.state.tasks[m.taskId]?.resolves ?? m.taskId;
      const carriedOn = a.state.order.some((id) => {
        const r = a.state.tasks[id]!;
        return r.resolves === origin && r.merge === undefined && id !== m.taskId;
      });
      if (m.outcome !== "conflict" || !carriedOn) await releaseLeases(a, [m.taskId]);
      a.kick();
    },
    async onFixRequest(runId: string, f: EventPayload<"fix.requested">): Promise<void> {
      const a = await actorFor(runId);
      if (!a) return;
      await a.mutate((s) => applyFixRequest(s, f, deps.policy));
      a.kick();
    },
    async onSweep(runId: string, e: EventPayload<"health.swept">): Promise<void> {
      const a = await actorFor(runId);
      if (!a) return;
      await a.mutate((s) => {
        const next = applySweep(s, e);
        return e.requestId ? applyFinalResult(next, e.requestId, next.lastSweep!, Date.now()) : next;
      });
      a.kick();
    },
    /**
     * Cancels a run (`longshot.cancel`): records it in the `longshot-cancelled` bucket (the dispatcher stops the
     * run's sandboxes and starts none), announces `run.cancelled`, and completes the run with status
     * `cancelled` and the reason. Idempotent (ids `run-cancelled-<run>`, `run-completed-<run>`); a finished or
     * unknown run is left alone. Returns whether the run was cancelled now.
     */
    async onCancel(req: CancelRequest): Promise<boolean> {
      const a = await actorFor(req.runId);
      if (!a) return false;
      const record = { reason: req.reason, ...(req.by ? { by: req.by } : {}), at: Date.now() };
      await (await deps.bus.kv(Buckets.cancelled)).put(req.runId, JSON.stringify(record));
      await deps.bus.publishEvent(
        "run.cancelled",
        req.runId,
        { reason: req.reason, ...(req.by ? { by: req.by } : {}) },
        { id: `run-cancelled-${req.runId}` },
      );
      a.dispose();
      const summary = summarize(a.state, a.state.lastSweep, Date.now(), req.reason);
      await a.complete({ ...summary, status: "cancelled" });
      a.log.warn({ reason: req.reason, by: req.by }, "run cancelled");
      return true;
    },
    /** Counters for operators and tests. `planCrashes`: see `planCrashed`. */
    stats(): { planCrashes: number } {
      return { planCrashes };
    },
    stop(): void {
      for (const a of actors.values()) a.dispose();
    },
  };
}
export type Planner = ReturnType<typeof createPlanner>;
