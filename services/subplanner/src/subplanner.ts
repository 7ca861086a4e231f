import { readFile } from "node:fs/promises";
import {
  acquirePlanningLease,
  type Bus,
  holdingPlanningLease,
  KvActor,
  KvActorExistsError,
  RetryableError,
  releaseLease,
  wholeState,
} from "@longshot/bus";
import {
  Buckets,
  failedHandoff,
  type Handoff,
  HandoffMessage,
  type Task,
  TaskMessage,
  taskQueue,
} from "@longshot/contracts";
import { type ChatClient, refusalStatus, repoToolSet } from "@longshot/llm";
import type { Logger } from "@longshot/log";
import type { KV } from "@nats-io/kv";
import type { RepoReader } from "./adapters/repo.ts";
import {
  applyBatch,
  applyHandoff,
  applyMerge,
  applyModelFailure,
  atomicDecomposition,
  buildSubtasks,
  type DecompositionState,
  decideNext,
  decideParent,
  decompositionKey,
  finish,
  initialDecomposition,
  MAX_CONSECUTIVE_ERRORS,
  MAX_ROUNDS,
  MAX_SUBTASKS_PER_BATCH,
  type MergeOutcome,
  markOutPublished,
  markPublished,
  SubplannerOutput,
  type Turn,
} from "./domain/decomposition.ts";
import { followUpMessage, initialMessage } from "./domain/messages.ts";

/** Dependencies of the subplanner core (factory-injected so tests can pass their own). */
export interface SubplannerDeps {
  bus: Bus;
  log: Logger;
  llm: Pick<ChatClient, "completeJson">;
  repo: Pick<RepoReader, "snapshot" | "atCommit">;
  systemPromptPath: string;
  /** GIT_BRANCH_PREFIX, e.g. `worker/`. */
  branchPrefix: string;
  /** Most batches per decomposition (default 5). */
  maxRounds?: number;
  /** Most subtasks per batch (default 10). */
  maxSubtasks?: number;
  /** Consecutive model failures before giving up (default 5). */
  maxConsecutiveErrors?: number;
  /** Clock in epoch ms (default `Date.now`). */
  now?: () => number;
  /**
   * Replies with tool calls the model may make per decomposition call (PLANNER_TOOL_ROUNDS): read_file, list, grep
   * and git_log at the snapshot's commit (`repoToolSet` of @longshot/llm); the exchange is not kept in the
   * conversation. Absent or 0 = no tools.
   */
  toolRounds?: number;
  /**
   * This subplanner's instance id (see `instanceId` in @longshot/bus): the owner of the planning leases it takes.
   * Several instances on one cluster must have distinct ids. Default `subplanner/1`.
   */
  instance?: string;
}

/** Fixed delay before a failed actor step (a publish or KV write) is tried again, ms. */
const STEP_RETRY_MS = 2000;

/**
 * The subplanner core: one actor per decomposition (key `<runId>.<parentId>`). Every state change is
 * serialized per decomposition and written to KV `longshot-decompositions` before the triggering message is
 * acknowledged or the next side effect happens, so a restarted subplanner resumes every unfinished
 * decomposition from KV (its conversation included). Side effects use deterministic message ids, so a step
 * repeated after a crash is dropped by JetStream's duplicate window.
 */
export function createSubplanner(deps: SubplannerDeps) {
  const maxRounds = deps.maxRounds ?? MAX_ROUNDS;
  const maxSubtasks = deps.maxSubtasks ?? MAX_SUBTASKS_PER_BATCH;
  const maxErrors = deps.maxConsecutiveErrors ?? MAX_CONSECUTIVE_ERRORS;
  const now = deps.now ?? Date.now;
  const me = deps.instance ?? "subplanner/1";
  const actors = new Map<string, Decomposition>();
  const loading = new Map<string, Promise<Decomposition | undefined>>();
  /** `<runId>.<subtaskId>` → decomposition key, for merge events (which carry only the task id). */
  const subIndex = new Map<string, string>();
  let stopped = false;
  let kvP: Promise<KV> | undefined;
  const kv = () => {
    kvP ??= deps.bus.kv(Buckets.decompositions);
    return kvP;
  };
  let systemPrompt: string | undefined;
  const codec = wholeState<DecompositionState>();

  class Decomposition {
    /** The decomposition's state in KV (one value, compare-and-set: see KvActor of @longshot/bus). */
    readonly store: KvActor<DecompositionState>;
    readonly key: string;
    readonly log: Logger;
    private ticking = false;
    private again = false;
    private timer: NodeJS.Timeout | undefined;

    constructor(store: KvActor<DecompositionState>) {
      this.store = store;
      const state = store.state;
      this.key = decompositionKey(state.parent.runId, state.parent.id);
      this.log = deps.log.child({ runId: state.parent.runId, parentId: state.parent.id });
      this.index();
    }

    /** The decomposition as last persisted. */
    get state(): DecompositionState {
      return this.store.state;
    }

    private index(): void {
      for (const id of this.state.order) subIndex.set(`${this.state.parent.runId}.${id}`, this.key);
    }

    /**
     * Applies `fn` to the state (serialized per decomposition) and persists the result with compare-and-set
     * before resolving (a concurrent writer's change is reloaded and `fn` applied once more).
     */
    async mutate(fn: (s: DecompositionState) => DecompositionState): Promise<void> {
      await this.store.mutate(fn);
      this.index();
    }

    /** Schedules the actor loop; concurrent kicks coalesce into one more pass. */
    kick(): void {
      if (stopped) return;
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
          } while (this.again && !stopped);
        } catch (err) {
          this.log.error({ err }, "decomposition step failed; retrying");
          this.sleep(STEP_RETRY_MS).then(() => this.kick());
        } finally {
          this.ticking = false;
        }
      })();
    }

    private sleep(ms: number): Promise<void> {
      return new Promise<void>((r) => {
        this.timer = setTimeout(r, ms);
      });
    }

    private async tick(): Promise<void> {
      while (!stopped) {
        // Another instance may have applied messages of this decomposition: act on the state in KV.
        if (!(await this.store.refresh())) {
          retire(this);
          return;
        }
        const s = this.state;
        const step = decideNext(s, maxRounds);
        switch (step.kind) {
          case "wait": {
            const recs = s.order.map((id) => s.subtasks[id]!);
            this.log.info(
              {
                subtasks: recs.length,
                handoffs: recs.filter((r) => r.handoff).length,
                merges: recs.filter((r) => r.merge).length,
              },
              "waiting for subtasks",
            );
            return;
          }
          case "idle":
            retire(this);
            return;
          case "plan": {
            // One instance calls the model for a decomposition at a time: take its planning lease first.
            const waitMs = await acquirePlanningLease(this, me);
            if (waitMs !== undefined) {
              // Look again when it may have ended (the holder ticks on after its call).
              this.sleep(waitMs).then(() => this.kick());
              return;
            }
            await this.plan();
            break;
          }
          case "publish-subtasks":
            for (const sub of step.tasks) {
              const queue = taskQueue(sub);
              // The event first, so readers of EVENTS see the subtask planned before it started.
              await deps.bus.publishEvent(
                "task.planned",
                sub.runId,
                { task: sub },
                { taskId: sub.id, id: `planned-${sub.runId}-${sub.id}-${sub.attempt}` },
              );
              await deps.bus.publish(TaskMessage, [queue, sub.runId], sub, {
                runId: sub.runId,
                taskId: sub.id,
                id: `task-${sub.runId}-${sub.id}-${sub.attempt}`,
              });
              await this.mutate((st) => markPublished(st, sub.id));
              this.log.info({ taskId: sub.id, queue, scope: sub.scope }, "subtask published");
            }
            break;
          case "publish-atomic": {
            const p = s.parent;
            // Straight to the execute subject (not taskQueue) so it is not routed back here; its own message
            // id, since the parent's original id is still inside the TASKS duplicate window.
            await deps.bus.publish(TaskMessage, ["execute", p.runId], p, {
              runId: p.runId,
              taskId: p.id,
              id: `task-${p.runId}-${p.id}-${p.attempt}-atomic`,
            });
            await this.mutate(markOutPublished);
            this.log.info({ reason: s.atomicReason }, "parent is atomic: sent to a worker as it is");
            break;
          }
          case "finish":
            await this.mutate((st) => finish(st, now()));
            break;
          case "publish-aggregate": {
            const h = s.aggregate as Handoff;
            const p = s.parent;
            await deps.bus.publish(HandoffMessage, [p.runId], h, {
              runId: p.runId,
              taskId: p.id,
              id: `handoff-${p.runId}-${p.id}-${p.attempt}`,
            });
            // tokensUsed: only the subplanner's own tokens, since each subtask reports its own task.finished.
            await deps.bus.publishEvent(
              "task.finished",
              p.runId,
              {
                taskId: p.id,
                status: h.status,
                summary: h.summary,
                durationMs: h.metrics.durationMs,
                tokensUsed: s.tokens,
              },
              { taskId: p.id, id: `finished-${p.runId}-${p.id}-${p.attempt}` },
            );
            await this.mutate(markOutPublished);
            this.log.info(
              {
                status: h.status,
                subtasks: s.order.length,
                rounds: s.round,
                durationMs: h.metrics.durationMs,
              },
              "aggregate handoff published",
            );
            break;
          }
        }
      }
    }

    /**
     * One model call (first decomposition or follow-up), holding the planning lease (renewed every third of its
     * TTL). Failures are recorded and backed off, not thrown.
     */
    private plan(): Promise<void> {
      return holdingPlanningLease(this, me, () => this.planCall(), {
        onRenewError: (err) => this.log.warn({ err }, "planning lease not renewed"),
      });
    }

    private async planCall(): Promise<void> {
      const s = this.state;
      try {
        const snapshot = await deps.repo.snapshot(s.parent.repo, s.parent.baseBranch);
        systemPrompt ??= await readFile(deps.systemPromptPath, "utf8");
        const first = s.conversation.length === 0;
        const user: Turn = {
          role: "user",
          content: first
            ? initialMessage(s.parent, snapshot, maxSubtasks)
            : followUpMessage(s, snapshot, maxRounds, maxSubtasks),
        };
        const history: Turn[] = first ? [{ role: "system", content: systemPrompt }] : s.conversation;
        const toolRounds = deps.toolRounds ?? 0;
        const tools =
          toolRounds > 0
            ? { tools: repoToolSet(deps.repo.atCommit(s.parent.repo, snapshot.head)), maxRounds: toolRounds }
            : undefined;
        const res = await deps.llm.completeJson(
          [...history, user],
          SubplannerOutput,
          { runId: s.parent.runId, taskId: `${s.parent.id}.subplanner` },
          tools,
        );
        const { tasks, dropped } = buildSubtasks(s.parent, res.value.tasks, {
          branchPrefix: deps.branchPrefix,
          lastIndex: s.lastIndex,
          maxSubtasks,
        });
        if (dropped.length) this.log.warn({ dropped }, "model subtasks dropped");
        const turns = first ? [history[0]!, user, ...res.added] : [user, ...res.added];
        await this.mutate((st) => ({
          ...applyBatch(st, turns, tasks, res.usage.totalTokens, snapshot.head),
          planningLease: releaseLease(st.planningLease, me),
        }));
        this.log.info(
          {
            round: this.state.round,
            subtasks: tasks.length,
            phase: this.state.phase,
            toolCalls: res.toolCalls,
          },
          "planned",
        );
      } catch (err) {
        const reason = (err as Error).message;
        // A refusal retrying cannot fix (bad key, no access, unknown model) gives up at once.
        const limit = refusalStatus(err) === undefined ? maxErrors : 1;
        await this.mutate((st) => ({
          ...applyModelFailure(st, reason, limit),
          planningLease: releaseLease(st.planningLease, me),
        }));
        const n = this.state.consecutiveErrors;
        this.log.error({ err, consecutiveErrors: n }, "decomposition model call failed");
        // Backoff min(2 s · 2^(n−1), 30 s) before the next attempt (inventory §1.6), unless it gave up.
        if (decideNext(this.state, maxRounds).kind === "plan")
          await this.sleep(Math.min(2000 * 2 ** (n - 1), 30_000));
      }
    }

    dispose(): void {
      if (this.timer) clearTimeout(this.timer);
    }
  }

  function retire(a: Decomposition): void {
    if (actors.get(a.key) !== a) return;
    actors.delete(a.key);
    for (const id of a.state.order) {
      if (subIndex.get(`${a.state.parent.runId}.${id}`) === a.key)
        subIndex.delete(`${a.state.parent.runId}.${id}`);
    }
  }

  const unfinished = (s: DecompositionState) => s.phase === "active" || !s.outPublished;

  async function load(key: string): Promise<Decomposition | undefined> {
    const store = await KvActor.load(await kv(), key, codec);
    if (!store || !unfinished(store.state)) return undefined;
    const existing = actors.get(key);
    if (existing) return existing;
    const a = new Decomposition(store);
    actors.set(key, a);
    return a;
  }

  /** The live actor of `key`, loading an unfinished decomposition from KV if needed (once per key). */
  async function actorFor(key: string): Promise<Decomposition | undefined> {
    const existing = actors.get(key);
    if (existing) return existing;
    let p = loading.get(key);
    if (!p) {
      p = load(key).finally(() => loading.delete(key));
      loading.set(key, p);
    }
    return p;
  }

  return {
    /** Loads every unfinished decomposition from KV and resumes it (after a restart). Returns how many. */
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

    /**
     * Answers parent `task` with a `failed` handoff and `task.finished` under the ids of its normal outcome
     * (`handoff-<run>-<task>-<attempt>`), for a parent whose decomposition could not even be recorded (the
     * consumer's last delivery): the root planner then retries or gives up on it instead of waiting. A real
     * outcome already published stands (JetStream drops the repeat).
     */
    async giveUp(task: Task, reason: string): Promise<void> {
      const { ack } = await deps.bus.publish(HandoffMessage, [task.runId], failedHandoff(task, reason, 0), {
        runId: task.runId,
        taskId: task.id,
        id: `handoff-${task.runId}-${task.id}-${task.attempt}`,
      });
      if (ack.duplicate) return;
      await deps.bus.publishEvent(
        "task.finished",
        task.runId,
        {
          taskId: task.id,
          attempt: task.attempt,
          status: "failed",
          summary: reason.slice(0, 500),
          durationMs: 0,
          tokensUsed: 0,
        },
        { taskId: task.id, id: `finished-${task.runId}-${task.id}-${task.attempt}` },
      );
      deps.log.error(
        { runId: task.runId, taskId: task.id, attempt: task.attempt, reason },
        "parent given up",
      );
    },

    /**
     * A parent task from `longshot.task.decompose.<runId>`. Creates its decomposition in KV and returns (the
     * caller acks); the decomposition then runs on its own. Idempotent: a redelivery while the decomposition
     * exists does nothing. A task that does not qualify for decomposition is sent to a worker unchanged.
     * @throws RetryableError when the stored state changed concurrently (retried by the consume wrapper).
     */
    async onParent(task: Task): Promise<void> {
      const key = decompositionKey(task.runId, task.id);
      const store = await kv();
      const old = actors.get(key);
      const loaded = old?.store ?? (await KvActor.load(store, key, codec));
      const existing = loaded?.state;
      const decision = decideParent(existing, task);
      if (decision === "ignore") {
        deps.log.debug({ runId: task.runId, taskId: task.id, attempt: task.attempt }, "parent already known");
        return;
      }
      const lastIndex = existing?.lastIndex ?? 0;
      const state =
        taskQueue(task) === "decompose"
          ? initialDecomposition(task, now(), lastIndex)
          : atomicDecomposition(
              task,
              now(),
              `scope ${task.scope.length} files at depth ${task.depth}`,
              lastIndex,
            );
      let kva: KvActor<DecompositionState>;
      if (decision === "start") {
        try {
          kva = await KvActor.create(store, key, codec, state);
        } catch (err) {
          if (err instanceof KvActorExistsError) return; // created concurrently: a redelivery
          throw err;
        }
      } else {
        // A new attempt of the parent replaces its decomposition (compare-and-set on what was read).
        kva = loaded!;
        try {
          await kva.mutate(() => state);
        } catch (err) {
          throw new RetryableError(`decomposition ${key} changed concurrently`, { cause: err });
        }
        if (old) {
          old.dispose();
          retire(old);
        }
      }
      const a = new Decomposition(kva);
      actors.set(key, a);
      a.log.info(
        { attempt: task.attempt, scope: task.scope.length, phase: state.phase },
        "decomposition started",
      );
      a.kick();
    },

    /** A handoff from `longshot.handoff.>`: recorded when its task is a subtask of a live decomposition. */
    async onHandoff(h: Handoff): Promise<void> {
      const parentId = h.task.parentId;
      if (!parentId) return;
      const a = await actorFor(decompositionKey(h.runId, parentId));
      if (!a) return;
      await a.mutate((s) => applyHandoff(s, h));
      a.kick();
    },

    /**
     * A `merge.*` event: recorded when `taskId` is a subtask of a live decomposition, ignored otherwise. The
     * decomposition is `parentId`'s when the event names it (found in KV by any instance), else the one this
     * instance indexed the subtask under.
     */
    async onMerge(
      runId: string,
      taskId: string,
      attempt: number,
      outcome: MergeOutcome,
      detail: string,
      parentId?: string,
    ): Promise<void> {
      const key = parentId ? decompositionKey(runId, parentId) : subIndex.get(`${runId}.${taskId}`);
      if (!key) return;
      const a = await actorFor(key);
      if (!a) return;
      await a.mutate((s) => applyMerge(s, taskId, attempt, outcome, detail));
      a.kick();
    },

    /** Stops every actor loop and timer (state stays in KV for the next start). */
    stop(): void {
      stopped = true;
      for (const a of actors.values()) a.dispose();
    },
  };
}

/** The subplanner core returned by {@link createSubplanner}. */
export type Subplanner = ReturnType<typeof createSubplanner>;
