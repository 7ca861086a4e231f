/**
 * Subject builders: the only place subject strings are made. Hierarchy goes wide → narrow:
 * `longshot.<kind>.…`; entity ids only where a consumer filters on them.
 */
export const ROOT = "longshot";

/** Which service takes a task: `execute` (a sandbox via the dispatcher) or `decompose` (the subplanner). */
export type TaskQueue = "execute" | "decompose";

export const Subjects = {
  /** Public entry (plain JSON, no envelope). */
  request: `${ROOT}.request`,
  /** Public: cancel a run (plain JSON `CancelRequest`, no envelope). */
  cancel: `${ROOT}.cancel`,
  /** A task ready for `queue`. */
  task: (queue: TaskQueue, runId: string) => `${ROOT}.task.${queue}.${runId}`,
  allTasks: (queue: TaskQueue | "*" = "*") => `${ROOT}.task.${queue}.>`,
  /** The handoff of one task attempt. */
  handoff: (runId: string) => `${ROOT}.handoff.${runId}`,
  allHandoffs: `${ROOT}.handoff.>`,
  /** An event of a run: `type` is `<entity>.<verb>`, e.g. `run.accepted`. */
  event: (runId: string, type: string) => `${ROOT}.event.${runId}.${type}`,
  /** Every event of one run (the public progress feed). */
  runEvents: (runId: string) => `${ROOT}.event.${runId}.>`,
  /** One event type (or `entity.>`) across all runs, for durable consumers. */
  eventsOfType: (type: string) => `${ROOT}.event.*.${type}`,
} as const;

/** Extracts the run id from an event subject, or undefined when the subject is not an event subject. */
export function runIdOfEventSubject(subject: string): string | undefined {
  const parts = subject.split(".");
  return parts[0] === ROOT && parts[1] === "event" ? parts[2] : undefined;
}
