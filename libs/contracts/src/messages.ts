import type { z } from "zod";
import { EventData, type EventType } from "./events.ts";
import { Subjects, type TaskQueue } from "./subjects.ts";
import { Handoff, Task } from "./task.ts";

/**
 * A message definition: type, version, payload schema and the subject it is published on.
 * Every enveloped message in the system is one of these.
 */
export interface MessageDef<T extends string, S extends z.ZodType, A extends unknown[]> {
  readonly type: T;
  readonly version: number;
  readonly schema: S;
  readonly subject: (...args: A) => string;
}

function define<T extends string, S extends z.ZodType, A extends unknown[]>(
  def: MessageDef<T, S, A>,
): MessageDef<T, S, A> {
  return def;
}

/** A task ready to run, on `longshot.task.<queue>.<runId>` (TASKS stream). */
export const TaskMessage = define({
  type: "task",
  version: 1,
  schema: Task,
  subject: (queue: TaskQueue, runId: string) => Subjects.task(queue, runId),
});

/** A finished attempt, on `longshot.handoff.<runId>` (HANDOFFS stream). */
export const HandoffMessage = define({
  type: "handoff",
  version: 1,
  schema: Handoff,
  subject: (runId: string) => Subjects.handoff(runId),
});

/** The definition of event `type` on `longshot.event.<runId>.<type>` (EVENTS stream). */
export function eventDef<T extends EventType>(type: T): MessageDef<T, (typeof EventData)[T], [string]> {
  return {
    type,
    version: 1,
    schema: EventData[type],
    subject: (runId: string) => Subjects.event(runId, type),
  };
}
