import type { Bus } from "@longshot/bus";
import {
  AttemptRecord,
  Buckets,
  type CancelRequest,
  Envelope,
  type Handoff,
  LlmRunUsage,
  Streams,
  Subjects,
} from "@longshot/contracts";
import type { Logger } from "@longshot/log";
import type { JsMsg } from "@nats-io/jetstream";
import { type Fleet, type FleetInput, overBudget, type RunBudgets, stuckTasks } from "./domain/fleet.ts";

/** What the monitor acts on; see {@link startMonitor}. */
export interface MonitorOptions {
  bus: Bus;
  log: Logger;
  fleet: Fleet;
  /** STUCK_AFTER_MS: a running attempt without progress this long is reported stuck. */
  stuckAfterMs: number;
  /** STUCK_POLICY: `alert` reports only; `retry` asks the dispatcher to stop the attempt's sandbox. */
  stuckPolicy: "alert" | "retry";
  /** RUN_TOKEN_BUDGET / RUN_COST_BUDGET (0 = none). */
  budgets: RunBudgets;
  /** How often to look for stuck tasks, ms (default min(STUCK_AFTER_MS / 4, 5 s)). */
  tickMs?: number;
  /** The clock (tests); default `Date.now`. */
  now?: () => number;
}

/** A running monitor. `ready` resolves once the streams are replayed up to their end at start. */
export interface Monitor {
  ready: Promise<void>;
  /** True once {@link ready} resolved (figures are complete). */
  isReady(): boolean;
  stop(): Promise<void>;
}

/**
 * Starts the monitor: folds the EVENTS and HANDOFFS streams into `fleet` from their first message (ordered
 * consumers: a restart replays them, so the figures are rebuilt, never counted twice) and follows them live,
 * with the LLM usage records of the `longshot-llm-usage` bucket and the attempt records of `longshot-attempts`. Once both streams are replayed up to where
 * they ended at start, it acts after every input and on a timer:
 * - a running task attempt with no progress for `(n+1) · STUCK_AFTER_MS` → `task.stuck` (report n+1, action =
 *   STUCK_POLICY; with `retry` the dispatcher running it stops its sandbox and the planner retries the task);
 * - a `complete` handoff with an empty diff → `alert.raised` (`empty-diff-complete`);
 * - an active run over its token or cost budget → `longshot.cancel` `{runId, reason, by: "monitor"}`.
 * Every action is published under a deterministic id (JetStream drops a duplicate inside its window) and comes
 * back through the EVENTS stream into the fold, so a restarted monitor does not act twice.
 */
export async function startMonitor(opts: MonitorOptions): Promise<Monitor> {
  const { bus, log, fleet } = opts;
  const now = opts.now ?? Date.now;
  const inFlight = new Set<string>();
  let ready = false;
  let stopped = false;
  const stops: (() => void | Promise<void>)[] = [];

  const act = () => {
    if (!ready || stopped) return;
    const t = now();
    for (const r of stuckTasks(fleet, t, opts.stuckAfterMs)) {
      once(r.id, () =>
        bus.publishEvent(
          "task.stuck",
          r.runId,
          {
            taskId: r.taskId,
            attempt: r.attempt,
            idleMs: r.idleMs,
            lastActivityAt: new Date(r.lastActivityAt).toISOString(),
            report: r.report,
            action: opts.stuckPolicy,
          },
          { taskId: r.taskId, id: r.id },
        ),
      );
    }
    for (const a of fleet.pendingAlerts()) {
      once(a.id, () =>
        bus.publishEvent(
          "alert.raised",
          a.runId,
          { kind: a.kind, taskId: a.taskId, attempt: a.attempt, message: a.message },
          { taskId: a.taskId, id: a.id },
        ),
      );
    }
    for (const c of overBudget(fleet, opts.budgets)) {
      const req: CancelRequest = { runId: c.runId, reason: c.reason, by: "monitor" };
      once(c.id, async () => {
        log.warn({ runId: c.runId, reason: c.reason }, "run over budget: cancelling it");
        await bus.js.publish(Subjects.cancel, JSON.stringify(req), { msgID: c.id });
      });
    }
  };
  /** Runs `publish` unless an action with this id is in flight (it stays so until the process ends). */
  const once = (id: string, publish: () => Promise<unknown>) => {
    if (inFlight.has(id)) return;
    inFlight.add(id);
    publish().catch((err: unknown) => {
      inFlight.delete(id);
      log.warn({ err, id }, "monitor action not published; will try again");
    });
  };

  const follow = async (stream: string, toInput: (m: JsMsg) => FleetInput | undefined) => {
    const info = await bus.jsm.streams.info(stream);
    const endAtStart = info.state.last_seq;
    let caughtUp!: () => void;
    const done = new Promise<void>((r) => {
      caughtUp = r;
    });
    if (endAtStart === 0 || info.state.messages === 0) caughtUp();
    const consumer = await bus.js.consumers.get(stream);
    const messages = await consumer.consume();
    stops.push(() => messages.stop());
    void (async () => {
      for await (const m of messages) {
        let input: FleetInput | undefined;
        try {
          input = toInput(m);
        } catch (err) {
          log.warn({ err, stream, seq: m.seq }, "unreadable message skipped");
        }
        if (input && fleet.apply(input)) act();
        if (m.seq >= endAtStart || m.info.pending === 0) caughtUp();
      }
    })().catch((err: unknown) => {
      if (!stopped) log.error({ err, stream }, "stream follow ended");
    });
    return done;
  };

  const eventsDone = follow(Streams.EVENTS.name, (m) => {
    const env = Envelope.parse(m.json());
    return { kind: "event", event: env };
  });
  const handoffsDone = follow(Streams.HANDOFFS.name, (m) => {
    const env = Envelope.parse(m.json()) as Envelope<Handoff>;
    return { kind: "handoff", envelope: env };
  });
  /**
   * Watches every key of `bucket` (current values first, then updates) into `put`; resolves once the values that
   * were there at start are applied.
   */
  const watchBucket = async (bucket: string, what: string, put: (key: string, value: unknown) => void) => {
    const kv = await bus.kv(bucket);
    const watch = await kv.watch();
    stops.push(() => watch.stop());
    let initial!: () => void;
    const done = new Promise<void>((r) => {
      initial = r;
    });
    // The watch delivers the current value of every key first, then updates; `delta` 0 marks the last initial one.
    const status = await kv.status();
    if (status.values === 0) initial();
    void (async () => {
      for await (const e of watch) {
        if (e.operation === "PUT") {
          try {
            put(e.key, e.json());
          } catch (err) {
            log.warn({ err, bucket, key: e.key }, "unreadable entry skipped");
          }
          act();
        }
        if (e.delta === 0) initial();
      }
    })().catch((err: unknown) => {
      if (!stopped) log.error({ err }, `${what} watch ended`);
    });
    return done;
  };
  const usageDone = watchBucket(Buckets.llmUsage, "usage", (_key, value) => {
    const u = LlmRunUsage.safeParse(value);
    if (u.success) fleet.setUsage(u.data);
  });
  const attemptsDone = watchBucket(Buckets.attempts, "attempt history", (key, value) => {
    const r = AttemptRecord.safeParse(value);
    if (r.success) fleet.setAttempt(key, r.data);
  });

  const readyPromise = Promise.all([eventsDone, handoffsDone, usageDone, attemptsDone]).then(() => {
    ready = true;
    log.info({ applied: fleet.applied, runs: fleet.runs.size, tasks: fleet.tasks.size }, "streams replayed");
    act();
  });
  const timer = setInterval(act, opts.tickMs ?? Math.min(opts.stuckAfterMs / 4, 5000));
  return {
    ready: readyPromise,
    isReady: () => ready,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      for (const s of stops) await s();
    },
  };
}
