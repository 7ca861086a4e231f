import type { Bus } from "@longshot/bus";
import { Envelope, EventData, Subjects, type Task } from "@longshot/contracts";
import type { Logger } from "@longshot/log";

/** Stops for the sandboxes of task attempts the monitor reports stuck with `action: "retry"`. */
export interface StuckTasks {
  /** Tracks `task`'s attempt while its sandbox runs: `signal` aborts when it is reported stuck; call `done` after. */
  watch(task: Pick<Task, "runId" | "id" | "attempt">): { signal: AbortSignal; done(): void };
  stop(): void;
}

const key = (runId: string, taskId: string, attempt: number) => `${runId}/${taskId}/${attempt}`;

/**
 * Listens to every `task.stuck` event (a plain subscription: every dispatcher hears it, the one running the attempt
 * acts; a report missed while disconnected is repeated by the monitor after another STUCK_AFTER_MS of silence).
 * A `retry` report aborts the attempt's signal: the provider terminates the sandbox and the attempt ends with a
 * failed handoff, which the planner retries like any failure. `alert` reports are left to people.
 */
export function watchStuckTasks(bus: Bus, log: Logger): StuckTasks {
  const running = new Map<string, AbortController>();
  const schema = EventData["task.stuck"];
  const sub = bus.nc.subscribe(Subjects.eventsOfType("task.stuck"), {
    callback: (err, msg) => {
      if (err) return;
      let env: Envelope;
      try {
        env = Envelope.parse(msg.json());
      } catch {
        return;
      }
      const d = schema.safeParse(env.data);
      if (!d.success || d.data.action !== "retry") return;
      const c = running.get(key(env.runId, d.data.taskId, d.data.attempt));
      if (!c || c.signal.aborted) return;
      log.warn(
        { runId: env.runId, taskId: d.data.taskId, attempt: d.data.attempt, idleMs: d.data.idleMs },
        "task reported stuck: stopping its sandbox for a retry",
      );
      c.abort(new Error(`stuck: no progress for ${Math.round(d.data.idleMs / 1000)} s (monitor)`));
    },
  });
  return {
    watch(task) {
      const k = key(task.runId, task.id, task.attempt);
      const c = new AbortController();
      running.set(k, c);
      return {
        signal: c.signal,
        done: () => {
          if (running.get(k) === c) running.delete(k);
        },
      };
    },
    stop() {
      sub.unsubscribe();
    },
  };
}
