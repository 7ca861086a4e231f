import { readFile } from "node:fs/promises";
import { type Bus, isKvConflict } from "@longshot/bus";
import {
  type AcceptedRun,
  Buckets,
  type EventPayload,
  type Handoff,
  HandoffMessage,
  TaskMessage,
  taskQueue,
} from "@longshot/contracts";
import type { RepoReader } from "@longshot/git";
import { type ChatClient, refusalStatus } from "@longshot/llm";
import type { Logger } from "@longshot/log";
import type { KV } from "@nats-io/kv";
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
}

const MAX_CONSECUTIVE_ERRORS = 10;

/**
 * The planner core: one actor per active run. Every state change is serialized per run and persisted to the
 * `longshot-runs` KV bucket (compare-and-set on the revision) before the triggering message is acknowledged, so a restarted planner resumes
 * (conversation included) from KV.
 */
export function createPlanner(deps: PlannerDeps) {
  const actors = new Map<string, RunActor>();
  let kvP: Promise<KV> | undefined;
  const kv = () => {
    kvP ??= deps.bus.kv(Buckets.runs);
    return kvP;
  };
  let systemPrompt: string | undefined;

  class RunActor {
    state: RunState;
    private chain: Promise<unknown> = Promise.resolve();
    private ticking = false;
    private again = false;
    private planning = false;
    private retryTimer: NodeJS.Timeout | undefined;
    private waitTimer: NodeJS.Timeout | undefined;
    readonly log: Logger;

    /** KV revision of `state` as last read or written (compare-and-set guard). */
    private revision: number;

    constructor(state: RunState, revision: number) {
      this.state = state;
      this.revision = revision;
      this.log = deps.log.child({ runId: state.run.runId });
    }

    /**
     * Applies `fn` to the state (serialized) and persists it with compare-and-set on the KV revision. If
     * another writer changed the run meanwhile (a second planner instance), the state is reloaded and `fn`
     * applied to it once more; a second conflict throws (the triggering message is then redelivered).
     */
    mutate(fn: (s: RunState) => RunState): Promise<void> {
      const p = this.chain.then(async () => {
        const store = await kv();
        for (let attempt = 0; ; attempt++) {
          const next = fn(this.state);
          if (next === this.state) return;
          try {
            this.revision = await store.update(next.run.runId, JSON.stringify(next), this.revision);
            this.state = next;
            return;
          } catch (err) {
            if (attempt > 0 || !isKvConflict(err)) throw err;
            const fresh = await store.get(next.run.runId);
            if (fresh?.operation !== "PUT") throw err;
            this.log.warn(
              { revision: this.revision, current: fresh.revision },
              "run state changed elsewhere; reloaded",
            );
            this.state = fresh.json<RunState>();
            this.revision = fresh.revision;
          }
        }
      });
      this.chain = p.catch(() => undefined);
      return p;
    }

    /** Schedules a tick (publish tasks, plan, finalize); coalesces concurrent kicks. */
    kick(): void {
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
          this.log.error({ err }, "tick failed");
        } finally {
          this.ticking = false;
        }
      })();
    }

    private async tick(): Promise<void> {
      const s = this.state;
      if (s.phase === "completed") return;
      for (const task of tasksToPublish(s)) {
        const queue = taskQueue(task);
        await deps.bus.publish(TaskMessage, [queue, s.run.runId], task, {
          runId: s.run.runId,
          taskId: task.id,
          id: `task-${s.run.runId}-${task.id}-${task.attempt}`,
        });
        await deps.bus.publishEvent(
          "task.planned",
          s.run.runId,
          { task },
          { taskId: task.id, id: `planned-${s.run.runId}-${task.id}-${task.attempt}` },
        );
        await this.mutate((st) => ({
          ...st,
          tasks: {
            ...st.tasks,
            [task.id]: {
              ...st.tasks[task.id]!,
              published: true,
              ...(queue === "decompose" ? { decomposed: true } : {}),
            },
          },
        }));
      }
      if (!this.planning && needsPlan(this.state, deps.replanAfter)) {
        this.planning = true;
        void this.plan().finally(() => {
          this.planning = false;
          this.kick();
        });
        return;
      }
      if (this.planning) return;
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

    async complete(summary: ReturnType<typeof summarize>): Promise<void> {
      // Publish first (idempotent by id), then persist: a crash in between completes the run again.
      await deps.bus.publishEvent("run.completed", this.state.run.runId, summary, {
        id: `run-completed-${this.state.run.runId}`,
      });
      await this.mutate((st) => ({ ...st, phase: "completed", summary }));
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
        const history: Turn[] =
          s.conversation.length === 0 ? [{ role: "system", content: systemPrompt }] : s.conversation;
        const res = await deps.llm.completeJson([...history, user], PlannerOutput, {
          runId: s.run.runId,
          taskId: "planner",
        });
        const { tasks, dropped } = buildTasks(this.state, res.value.tasks, {
          branchPrefix: deps.policy.branchPrefix,
        });
        if (dropped.length) this.log.warn({ dropped }, "model repeated existing task ids; dropped");
        await this.mutate((st) => {
          const turns =
            st.conversation.length === 0 ? [history[0]!, user, ...res.added] : [user, ...res.added];
          let next = applyPlan(st, turns, tasks, res.usage.totalTokens);
          next = {
            ...next,
            pendingReports: st.pendingReports.filter((id) => !reported.has(id)),
            handoffsSinceReplan: Math.max(0, st.handoffsSinceReplan - handoffsAtStart),
            lastSeen: seenState(snapshot),
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
        this.log.info(
          { iteration: this.state.iteration, newTasks: tasks.length, done: this.state.planningDone },
          "planned",
        );
      } catch (err) {
        await this.mutate((st) => ({ ...st, consecutiveErrors: st.consecutiveErrors + 1 }));
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
        const delay = Math.min(2000 * 2 ** (n - 1), 30_000);
        await new Promise<void>((r) => {
          this.retryTimer = setTimeout(r, delay);
        });
      }
    }

    dispose(): void {
      if (this.retryTimer) clearTimeout(this.retryTimer);
      if (this.waitTimer) clearTimeout(this.waitTimer);
    }
  }

  const loading = new Map<string, Promise<RunActor | undefined>>();
  /** The live actor of a run, loading an unfinished run from KV if needed (once, even for concurrent callers). */
  function actorFor(runId: string): Promise<RunActor | undefined> {
    const existing = actors.get(runId);
    if (existing) return Promise.resolve(existing);
    let p = loading.get(runId);
    if (!p) {
      p = (async () => {
        const entry = await (await kv()).get(runId);
        if (entry?.operation !== "PUT") return undefined;
        const state = entry.json<RunState>();
        if (state.phase === "completed") return undefined;
        const actor = new RunActor(state, entry.revision);
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
        const a = await actorFor(key);
        if (a) {
          a.kick();
          n++;
        }
      }
      return n;
    },
    /** Whether a run id is already known (accepted earlier). */
    async known(runId: string): Promise<boolean> {
      const e = await (await kv()).get(runId);
      return !!e && e.operation === "PUT";
    },
    /** Starts a new run. Idempotent: for a run id already in KV it only re-announces `run.accepted`. */
    async start(run: AcceptedRun): Promise<void> {
      const store = await kv();
      const state = initialRunState(run, Date.now());
      let actor: RunActor | undefined;
      try {
        const revision = await store.create(run.runId, JSON.stringify(state));
        actor = new RunActor(state, revision);
        actors.set(run.runId, actor);
      } catch {
        // Already created: a redelivered request (perhaps after a crash before `run.accepted` went out).
        actor = await actorFor(run.runId);
      }
      await deps.bus.publishEvent("run.accepted", run.runId, run, { id: `run-accepted-${run.runId}` });
      actor?.kick();
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
    stop(): void {
      for (const a of actors.values()) a.dispose();
    },
  };
}
export type Planner = ReturnType<typeof createPlanner>;
